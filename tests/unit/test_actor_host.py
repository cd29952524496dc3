"""actor_host without sockets: the FIFO-group processor, and ``handle`` on in-memory stores with
the real SSE client over ``httpx.MockTransport`` and the real SQS adapter over a recording client.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from adapters.actor_store import InMemoryActorStore
from adapters.message_store import InMemoryMessageStore
from adapters.pool_errors.memory import InMemoryPoolErrorStore
from adapters.runner.attempt import StartLimits
from adapters.runner.client import AsyncRunnerClient
from adapters.runner.transport import StartTarget
from adapters.runner_config_store import InMemoryRunnerConfigStore
from adapters.settings import Settings
from adapters.slots import InMemorySlotStore
from adapters.sqs import SqsDeadLetterQueue, SqsMessageQueue, SqsReplies
from adapters.tracker import build_tracker
from core.models import ActorRecord, ErrorPolicy, MessageRecord, PoolKey, RunnerConfig
from functions.actor_host.app import first_actor_of_each_group, get_logger, handle
from functions.actor_host.host import HostDeps, record_info
from functions.actor_host.processor import FifoGroupAsyncProcessor, GroupHeldBack, group_of
from tests.fixtures.sqs_events import FakeLambdaContext, envelope_body, sqs_event, sqs_record

# --- the processor -----------------------------------------------------------------------------


def run_processor(records: list[dict[str, Any]], handler: Any) -> FifoGroupAsyncProcessor:
    processor = FifoGroupAsyncProcessor()
    with processor(records, handler):
        processor.run()
    return processor


def test_groups_run_concurrently_and_in_order_within() -> None:
    order: list[str] = []
    b_started = asyncio.Event()

    async def handler(record: Any) -> str:
        body = record.body
        if body == "a1":
            # Would deadlock (and time out) if group b waited for group a.
            await asyncio.wait_for(b_started.wait(), timeout=5)
        if body.startswith("b"):
            b_started.set()
        order.append(body)
        return body

    records = [
        sqs_record("a1", group_id="a"),
        sqs_record("a2", group_id="a"),
        sqs_record("b1", group_id="b"),
        sqs_record("a3", group_id="a"),
    ]
    processor = run_processor(records, handler)
    assert processor.response() == {"batchItemFailures": []}
    assert [x for x in order if x.startswith("a")] == ["a1", "a2", "a3"]
    assert order.index("b1") < order.index("a1")


def test_a_failure_holds_back_only_its_group() -> None:
    ran: list[str] = []

    async def handler(record: Any) -> str:
        ran.append(record.body)
        if record.body == "a1":
            raise RuntimeError("boom")
        return record.body

    records = [
        sqs_record("a1", group_id="a", message_id="id-a1"),
        sqs_record("b1", group_id="b", message_id="id-b1"),
        sqs_record("a2", group_id="a", message_id="id-a2"),
        sqs_record("b2", group_id="b", message_id="id-b2"),
    ]
    processor = run_processor(records, handler)
    assert sorted(ran) == ["a1", "b1", "b2"]  # a2 never ran
    assert processor.response() == {
        "batchItemFailures": [{"itemIdentifier": "id-a1"}, {"itemIdentifier": "id-a2"}]
    }
    assert isinstance(processor.exceptions[-1][1], GroupHeldBack)


def test_all_failed_is_a_partial_response_not_an_exception() -> None:
    async def handler(record: Any) -> str:
        raise RuntimeError("down")

    processor = run_processor([sqs_record("x", group_id="g", message_id="m")], handler)
    assert processor.response() == {"batchItemFailures": [{"itemIdentifier": "m"}]}


def test_group_of_standard_queue_record_is_its_own() -> None:
    record = sqs_record("x", message_id="solo")
    assert group_of(record) == "solo"
    assert group_of(sqs_record("x", group_id="g")) == "g"


def test_record_info_tolerates_odd_attributes() -> None:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    raw = sqs_record("body", group_id="g", receive_count=3)
    info = record_info(SQSRecord(raw))
    assert (info.receive_count, info.group_id, info.body) == (3, "g", "body")
    raw["attributes"]["ApproximateReceiveCount"] = "not a number"
    assert record_info(SQSRecord(raw)).receive_count == 1


def test_first_actor_of_each_group_skips_followers_and_malformed() -> None:
    records = [
        sqs_record(envelope_body("a1", "m1"), group_id="a1", message_id="s1"),
        sqs_record(envelope_body("a1", "m2"), group_id="a1", message_id="s2"),
        sqs_record("{bad", group_id="a2", message_id="s3"),
        sqs_record(envelope_body("a3", "m1"), group_id="a3", message_id="s4"),
    ]
    assert first_actor_of_each_group(records) == {"s1": "a1", "s4": "a3"}


# --- handle() on in-memory stores -------------------------------------------------------------


def frame(data: dict[str, Any]) -> bytes:
    return b"data: " + base64.b64encode(json.dumps(data).encode()) + b"\n\n"


class FakeRunner:
    """A serverless endpoint as an httpx MockTransport handler; the path picks the behaviour."""

    def __init__(self) -> None:
        self.starts = 0
        self.during: Any = None  # called while the runner "runs": a concurrent writer

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.starts += 1
        if self.during is not None:
            self.during()
        body = json.loads(request.content)
        path = request.url.path
        if "/http_503/" in path:
            return httpx.Response(503, text="busy")
        if "/actor_error/" in path:
            content = frame({"v": 1, "type": "init", "runner_id": "r1"}) + frame(
                {"type": "error", "code": "boom", "message": "bad", "retryable": False}
            )
        else:
            state = body["state"] or {}
            content = frame({"v": 1, "type": "init", "runner_id": "r1"}) + frame(
                {
                    "type": "done",
                    "output": {"echo": body["input"]},
                    "state": {"count": state.get("count", 0) + 1},
                }
            )
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)


class RecordingSqs:
    """A boto3-shaped SQS client that records calls (the adapter code under it is real)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("visibility", kw))
        return {"Successful": [{"Id": e["Id"]} for e in kw["Entries"]], "Failed": []}

    def send_message(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("send", kw))
        return {"MessageId": "x"}

    def visibilities(self) -> dict[str, int]:
        return {
            e["ReceiptHandle"]: e["VisibilityTimeout"]
            for name, kw in self.calls
            if name == "visibility"
            for e in kw["Entries"]
        }


class Env:
    def __init__(self, rand: float = 0.5) -> None:
        self.actors = InMemoryActorStore(in_lambda=False)
        self.slots = InMemorySlotStore(in_lambda=False)
        self.messages = InMemoryMessageStore(actors=self.actors, slots=self.slots, in_lambda=False)
        self.configs = InMemoryRunnerConfigStore(in_lambda=False)
        self.runner = FakeRunner()
        self.sqs = RecordingSqs()
        settings = Settings(deadline_margin_s=10.0)
        self.tracker = build_tracker(settings, store=InMemoryPoolErrorStore(in_lambda=False))
        self.deps = HostDeps(
            settings=settings,
            actors=self.actors,
            messages=self.messages,
            configs=self.configs,
            slots=self.slots,
            tracker=self.tracker,
            runner=lambda: AsyncRunnerClient(
                StartLimits(),
                transport=httpx.MockTransport(self.runner.handle),
                resolver=lambda host, port: ["93.184.216.34"],
            ),
            target_for=StartTarget.from_config,
            queue=SqsMessageQueue("https://sqs.test/q.fifo", client=self.sqs),
            dlq=SqsDeadLetterQueue("https://sqs.test/dlq.fifo", client=self.sqs),
            replies=SqsReplies(client=self.sqs),
            logger=get_logger(),
            rand=lambda: rand,
        )

    def setup(self, path: str = "ok", **config: Any) -> None:
        self.configs.put(
            RunnerConfig(
                namespace="ns", runner_name="p", url=f"https://runner.example.com/{path}/", **config
            )
        )
        self.actors.create(ActorRecord(actor_id="a1", namespace="ns", runner_name="p"))
        self.messages.create(MessageRecord(actor_id="a1", message_id="m1", input="hi"))

    def run(self, remaining_ms: int = 900_000, **record: Any) -> dict[str, Any]:
        rec = sqs_record(
            envelope_body("a1", "m1"), group_id="a1", receipt_handle="rh-1", message_id="sq-1"
        )
        rec.update(record)
        return handle(sqs_event(rec), FakeLambdaContext(remaining_ms), self.deps)


def test_success_commits() -> None:
    env = Env()
    env.setup()
    assert env.run() == {"batchItemFailures": []}
    actor = env.actors.get("a1")
    assert actor is not None and actor.state == {"count": 1} and actor.state_version == 1
    assert env.sqs.visibilities() == {}


@pytest.mark.parametrize(
    ("rand", "visibility"),
    [pytest.param(0.5, 5, id="half_jitter"), pytest.param(0.0, 0, id="zero_jitter")],
)
def test_retry_sets_the_backoff_as_visibility(rand: float, visibility: int) -> None:
    env = Env(rand=rand)
    env.setup("http_503", error_policy=ErrorPolicy(backoff_base_s=10, backoff_max_s=60))
    assert env.run() == {"batchItemFailures": [{"itemIdentifier": "sq-1"}]}
    assert env.sqs.visibilities() == {"rh-1": visibility}
    status = env.tracker.active_error(PoolKey(namespace="ns", runner_name="p"))
    assert status is not None and status.error.code == "serverless_http_error"


def test_deadline_hands_back_without_starting() -> None:
    env = Env()
    env.setup(request_lifespan=60)
    # 65 s left, 10 s margin: a 60 s execution must not start.
    assert env.run(remaining_ms=65_000) == {"batchItemFailures": [{"itemIdentifier": "sq-1"}]}
    assert env.runner.starts == 0
    assert env.sqs.visibilities() == {"rh-1": 0}
    message = env.messages.get("a1", "m1")
    assert message is not None and message.attempts == 0 and message.status == "pending"


@pytest.mark.parametrize(
    ("lifespan", "heard"),
    [
        pytest.param(None, "285", id="the_default_fits"),
        pytest.param(290, "285", id="a_longer_saved_lifespan_runs_capped"),
        pytest.param(60, "60", id="a_shorter_one_as_is"),
    ],
)
def test_lifespans_fit_at_the_start_of_an_invocation(lifespan: int | None, heard: str) -> None:
    """300 s timeout, 10 s margin, 5 s start allowance: 285 s is the longest lifespan the host
    runs; the API picks it as the default, and an older, longer config runs with it."""
    env = Env()
    env.deps.settings = Settings(deadline_margin_s=10.0, actor_host_timeout_s=300)
    seen: list[str] = []
    original = env.runner.handle

    async def record(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/start"):
            seen.append(request.headers["x-runner-request-lifespan"])
        return await original(request)

    env.runner.handle = record  # type: ignore[method-assign]
    lifespan = lifespan if lifespan is not None else env.deps.settings.max_request_lifespan_s
    env.setup(request_lifespan=lifespan)
    # An invocation that has just begun (a few hundred ms spent): it starts at once.
    assert env.run(remaining_ms=299_600) == {"batchItemFailures": []}
    assert seen == [heard]


def test_a_busy_record_comes_back_when_the_holders_lease_ends() -> None:
    env = Env()
    env.setup()
    now = datetime.now(UTC)
    held = env.messages.claim("a1", "m1", owner="crashed-host", lease_s=30, now=now)
    assert held.outcome == "claimed"
    assert env.run() == {"batchItemFailures": [{"itemIdentifier": "sq-1"}]}
    assert env.runner.starts == 0
    # Not an arbitrary backoff: the claim can succeed once the holder's 30 s lease is over.
    assert 29 <= env.sqs.visibilities()["rh-1"] <= 32


def test_missing_config_is_a_retryable_internal_error() -> None:
    env = Env(rand=0.0)
    env.actors.create(ActorRecord(actor_id="a1", namespace="ns", runner_name="nope"))
    env.messages.create(MessageRecord(actor_id="a1", message_id="m1"))
    assert env.run()["batchItemFailures"] == [{"itemIdentifier": "sq-1"}]
    message = env.messages.get("a1", "m1")
    assert message is not None and message.error is not None
    assert message.error["code"] == "internal_error"
    assert env.runner.starts == 0


def test_missing_actor_discards_the_message_and_tells_the_sender() -> None:
    env = Env()
    env.messages.create(
        MessageRecord(actor_id="a1", message_id="m1", reply_to="https://sqs.test/r")
    )
    assert env.run() == {"batchItemFailures": []}
    message = env.messages.get("a1", "m1")
    assert message is not None
    assert (message.status, message.disposition) == ("discarded", "discard")
    assert message.error is not None and message.error["code"] == "actor_deleted"
    assert env.runner.starts == 0
    sends = [kw for name, kw in env.sqs.calls if name == "send"]
    assert [json.loads(kw["MessageBody"])["status"] for kw in sends] == ["discarded"]


def test_non_retryable_actor_error_dead_letters_with_metrics(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import functions.actor_host.app as app

    env = Env()
    env.setup("actor_error")
    monkeypatch.setattr(app, "deps", lambda: env.deps)
    event = sqs_event(sqs_record(envelope_body("a1", "m1"), group_id="a1", message_id="sq-1"))
    assert app.lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    sends = [kw for name, kw in env.sqs.calls if name == "send"]
    assert [kw["QueueUrl"] for kw in sends] == ["https://sqs.test/dlq.fifo"]
    assert sends[0]["MessageGroupId"] == "a1" and sends[0]["MessageDeduplicationId"] == "m1"
    out = capsys.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    outcomes = {m.get("outcome") for m in emf if "Executions" in m}
    assert outcomes == {"dead_lettered"}
    codes = {m.get("code") for m in emf if "ExecutionErrors" in m}
    assert codes == {"actor_failed"}
    assert any("DeadLetters" in m for m in emf)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    summaries = [x for x in lines if x.get("message") == "invocation summary"]
    assert len(summaries) == 1  # one line per invocation, with the errors channel summary
    assert summaries[0]["function"] == "actor_host"
    assert summaries[0]["summary"]["errors_channel"]["by_code"] == {"actor_failed": 1}


def test_lambda_handler_takes_the_sam_sample_event_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    import functions.actor_host.app as app
    from tests.fixtures.sqs_events import TEMPLATE

    env = Env()
    env.setup()
    monkeypatch.setattr(app, "deps", lambda: env.deps)
    event = json.loads(json.dumps(TEMPLATE))  # exactly `sam local generate-event sqs ...`
    event["Records"][0]["body"] = envelope_body("a1", "m1")
    assert app.lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    assert env.messages.get("a1", "m1").status == "succeeded"  # type: ignore[union-attr]


def test_importing_the_handler_loads_no_aws_or_http_client() -> None:
    # Powertools' batch utility imports the (tiny) ``botocore`` package; no session or client.
    import subprocess
    import sys

    code = (
        "import sys, functions.actor_host.app; "
        "print(sorted(m for m in ('boto3', 'botocore.session', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_state_moved_underneath_is_not_committed_then_retried() -> None:
    env = Env(rand=0.0)
    env.setup()

    def concurrent_commit() -> None:  # another writer moves the actor's state on
        with env.actors.lock:
            env.actors._apply_commit("a1", state={"count": 41}, now=datetime.now(UTC))

    env.runner.during = concurrent_commit
    assert env.run() == {"batchItemFailures": [{"itemIdentifier": "sq-1"}]}
    actor = env.actors.get("a1")
    assert actor is not None and actor.state == {"count": 41}  # our result was not written
    stored = env.messages.load("a1", "m1")
    assert stored is not None and stored.record.status == "pending"
    assert stored.lease_owner is None  # handed back: the redelivery is not "busy"
    env.runner.during = None
    assert env.run() == {"batchItemFailures": []}
    actor = env.actors.get("a1")
    assert actor is not None and actor.state == {"count": 42} and actor.state_version == 2


def test_lost_lease_never_commits() -> None:
    env = Env(rand=0.0)
    env.setup()

    def take_over() -> None:  # as if our lease had run out and another delivery claimed it
        later = datetime.now(UTC) + timedelta(days=1)
        claim = env.messages.claim("a1", "m1", owner="thief", lease_s=60, now=later)
        assert claim.outcome == "claimed"

    env.runner.during = take_over
    response = env.run()
    assert response == {"batchItemFailures": [{"itemIdentifier": "sq-1"}]}
    actor = env.actors.get("a1")
    assert actor is not None and actor.state is None and actor.state_version == 0
    stored = env.messages.load("a1", "m1")
    assert stored is not None and stored.lease_owner == "thief"
