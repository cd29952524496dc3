"""actor_host without sockets: the batch (FIFO groups, verdicts), and ``handle`` on in-memory
stores with the real SSE client over ``httpx.MockTransport`` and the real SQS adapter over a
recording client.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from adapters.settings import Settings
from adapters.sqs import SqsMessageQueue, SqsReplies
from core.models import ActorRecord, ErrorPolicy, MessageRecord, PoolKey
from functions.actor_host.batch import (
    HELD_BACK,
    Verdict,
    answer,
    first_actor_of_each_group,
    group_of,
    record_info,
    run_batch,
)
from tests.fixtures.sqs_events import FakeLambdaContext, envelope_body, sqs_event, sqs_record
from tests.helpers.host import Env, RecordingSqs

# --- the batch ---------------------------------------------------------------------------------

DONE = Verdict("succeeded")
KEPT = Verdict.keep("retry_scheduled", 7, "boom")


async def never_held_back(record: Any) -> Verdict:
    return HELD_BACK


def test_groups_run_concurrently_and_in_order_within() -> None:
    order: list[str] = []
    b_started = asyncio.Event()

    async def execute(record: Any) -> Verdict:
        body = record["body"]
        if body == "a1":
            # Would deadlock (and time out) if group b waited for group a.
            await asyncio.wait_for(b_started.wait(), timeout=5)
        if body.startswith("b"):
            b_started.set()
        order.append(body)
        return DONE

    records = [
        sqs_record("a1", group_id="a"),
        sqs_record("a2", group_id="a"),
        sqs_record("b1", group_id="b"),
        sqs_record("a3", group_id="a"),
    ]
    assert run_batch(records, execute, held_back=never_held_back) == [DONE] * 4
    assert [x for x in order if x.startswith("a")] == ["a1", "a2", "a3"]
    assert order.index("b1") < order.index("a1")


def test_a_kept_record_holds_back_only_its_group() -> None:
    ran: list[str] = []
    held: list[str] = []

    async def execute(record: Any) -> Verdict:
        ran.append(record["body"])
        return KEPT if record["body"] == "a1" else DONE

    async def held_back(record: Any) -> Verdict:
        held.append(record["body"])
        return HELD_BACK

    records = [
        sqs_record("a1", group_id="a", message_id="id-a1", receipt_handle="rh-a1"),
        sqs_record("b1", group_id="b", message_id="id-b1"),
        sqs_record("a2", group_id="a", message_id="id-a2", receipt_handle="rh-a2"),
        sqs_record("b2", group_id="b", message_id="id-b2"),
    ]
    verdicts = run_batch(records, execute, held_back=held_back)
    assert sorted(ran) == ["a1", "b1", "b2"] and held == ["a2"]  # a2 never ran
    assert verdicts == [KEPT, DONE, HELD_BACK, DONE]
    env = Env()
    response = answer(records, verdicts, env.deps)
    assert response == {
        "batchItemFailures": [{"itemIdentifier": "id-a1"}, {"itemIdentifier": "id-a2"}]
    }
    # One batched call: the kept record's own visibility, 0 for the held-back follower.
    assert [name for name, _ in env.sqs.calls] == ["visibility"]
    assert env.sqs.visibilities() == {"rh-a1": 7, "rh-a2": 0}


def test_a_held_back_record_settled_on_its_last_receives_is_done() -> None:
    async def execute(record: Any) -> Verdict:
        return KEPT

    async def held_back(record: Any) -> Verdict:
        return Verdict("dead_lettered")

    records = [sqs_record("x", group_id="g"), sqs_record("y", group_id="g", message_id="y")]
    verdicts = run_batch(records, execute, held_back=held_back)
    assert verdicts == [KEPT, Verdict("dead_lettered")]
    response = answer(records, verdicts, Env().deps)
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}


def test_all_kept_is_a_partial_response_and_on_finish_runs_on_the_loop() -> None:
    finished: list[bool] = []

    async def execute(record: Any) -> Verdict:
        return KEPT

    async def on_finish() -> None:
        finished.append(asyncio.get_running_loop().is_running())

    records = [sqs_record("x", group_id="g", message_id="m")]
    verdicts = run_batch(records, execute, held_back=never_held_back, on_finish=on_finish)
    assert answer(records, verdicts, Env().deps) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    assert finished == [True]


def test_receipts_no_longer_in_flight_are_not_refused() -> None:
    class Partly(RecordingSqs):
        def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
            super().change_message_visibility_batch(**kw)
            return {
                "Successful": [],
                "Failed": [
                    {"Id": "0", "Code": "ReceiptHandleIsInvalid", "SenderFault": True},
                    {"Id": "1", "Code": "InternalError", "SenderFault": False},
                ],
            }

    queue = SqsMessageQueue("https://sqs.test/q.fifo", client=Partly())
    assert queue.change_visibility_many([("gone", 0), ("other", 5)]) == ["other"]


def test_a_reply_queue_that_does_not_exist_is_refused_by_code() -> None:
    from botocore.exceptions import ClientError

    from adapters.sqs import ReplyRefusedError

    class NoQueue(RecordingSqs):
        def send_message(self, **kw: Any) -> dict[str, Any]:
            error = {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "x"}}
            raise ClientError(error, "SendMessage")  # type: ignore[arg-type]

    replies = SqsReplies(client=NoQueue())
    with pytest.raises(ReplyRefusedError) as refused:
        replies.send("https://sqs.test/gone", {"actor_id": "a1"})
    assert refused.value.code == "AWS.SimpleQueueService.NonExistentQueue"


def test_group_of_standard_queue_record_is_its_own() -> None:
    record = sqs_record("x", message_id="solo")
    assert group_of(record) == "solo"
    assert group_of(sqs_record("x", group_id="g")) == "g"


def test_record_info_tolerates_odd_attributes() -> None:
    raw = sqs_record("body", group_id="g", receive_count=3)
    info = record_info(raw)
    assert (info.receive_count, info.group_id, info.body) == (3, "g", "body")
    raw["attributes"]["ApproximateReceiveCount"] = "not a number"
    assert record_info(raw).receive_count == 1
    raw["attributes"]["MessageGroupId"] = 7  # not a group id
    assert record_info(raw).group_id is None


@pytest.mark.parametrize("attributes", ["text", ["list"], 3], ids=["str", "list", "int"])
def test_garbage_attributes_fail_no_batch(attributes: Any) -> None:
    """A record whose ``attributes`` is not an object is read as having none: it cannot stop
    the batch (``record_info`` runs before a record's own error handling)."""
    raw = sqs_record("body", group_id="g", message_id="s1")
    raw["attributes"] = attributes
    info = record_info(raw)
    assert (info.receive_count, info.group_id, info.message_id) == (1, None, "s1")
    assert group_of(raw) == "s1"


def test_first_actor_of_each_group_skips_followers_and_malformed() -> None:
    records = [
        sqs_record(envelope_body("a1", "m1"), group_id="a1", message_id="s1"),
        sqs_record(envelope_body("a1", "m2"), group_id="a1", message_id="s2"),
        sqs_record("{bad", group_id="a2", message_id="s3"),
        sqs_record(envelope_body("a3", "m1"), group_id="a3", message_id="s4"),
    ]
    assert first_actor_of_each_group(records) == {"s1": "a1", "s4": "a3"}


# --- handle() on in-memory stores -------------------------------------------------------------


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


def fresh_python(code: str) -> str:
    """``code``'s stdout in a fresh interpreter (nothing imported or built yet)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return run.stdout.strip()


def test_importing_the_handler_loads_no_aws_or_http_client() -> None:
    # Not even botocore: the batch is the host's own (no Powertools batch utility), and
    # Powertools itself is imported when deps() builds the logger.
    code = (
        "import sys, functions.actor_host.app; "
        "names = ('boto3', 'botocore', 'httpx', 'aws_lambda_powertools'); "
        "print(sorted(m for m in names if m in sys.modules))"
    )
    assert fresh_python(code) == "[]"


def test_loggers_built_by_threads_at_once_all_work() -> None:
    # The first Logger built by three threads at once (as the chaos host's pollers build their
    # deps): each one must be able to append keys.
    code = (
        "import threading\n"
        "from functions.actor_host.app import get_logger\n"
        "out = []\n"
        "threads = [threading.Thread(target=lambda: out.append(get_logger())) for _ in range(3)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "[logger.thread_safe_append_keys(k=1) for logger in out]\n"
        "print(len(out))\n"
    )
    assert fresh_python(code) == "3"


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
