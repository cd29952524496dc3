"""actor_host limits end in a typed error, never in a loop (issue 11): item sizes checked before
the commit, a refused commit is final, conflicts retried a bounded number of times, ``stopping``
backs off, the host records its own dead letter before the queue's redrive limit, and an actor's
messages never start out of order.

Real parts: moto server over HTTP (tables and queues from template.yaml), the real SSE client,
the dev runner, and a small loopback endpoint that answers fixed frames.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from adapters.dynamodb.commit import CONFLICT_TRIES
from adapters.dynamodb.items import open_key
from adapters.dynamodb.messages import DynamoDBMessageStore
from core.exceptions import StoreCommitFailedError
from core.models import ErrorPolicy, MessageRecord
from infra.dev_faults import message_event
from infra.dev_runner import DevRunner
from tests.fixtures.sqs_events import envelope_body, sqs_event, sqs_record
from tests.helpers.host import Stack, failures
from tests.helpers.host import dev as dev  # a fixture
from tests.helpers.host import stack as stack  # a fixture

pytestmark = pytest.mark.integration

BIG = "x" * (450 * 1024)
INIT = message_event({"v": 1, "type": "init", "runner_id": "fixed-1"})


class FixedFrames:
    """A loopback endpoint: ``/<name>/start`` answers init and the raw frame for ``name``."""

    FRAMES: dict[str, bytes] = {
        "big_result": json.dumps({"type": "done", "output": BIG, "state": 1}).encode(),
        "big_state": json.dumps({"type": "done", "output": 1, "state": {"s": BIG}}).encode(),
        "nan_state": b'{"type":"done","output":1,"state":{"n":NaN}}',
        "overflow_output": b'{"type":"done","output":1e400,"state":1}',
    }

    def __init__(self) -> None:
        self.calls: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                name = self.path.strip("/").split("/")[0]
                owner.calls.append(name)
                body = INIT + b"data: " + base64.b64encode(owner.FRAMES[name]) + b"\n\n"
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"


@pytest.fixture(scope="module")
def fixed() -> Iterator[FixedFrames]:
    endpoint = FixedFrames()
    endpoint.thread.start()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


THREE = ErrorPolicy(max_attempts=3, backoff_base_s=0.1, backoff_max_s=0.1)


# --- sizes and numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param("big_result", "result_too_large", id="result_over_the_item_limit"),
        pytest.param("big_state", "state_too_large", id="state_over_the_item_limit"),
    ],
)
def test_a_done_that_does_not_fit_an_item_is_a_typed_actor_error(
    stack: Stack, fixed: FixedFrames, frame: str, code: str
) -> None:
    stack.pool(frame, fixed.url(frame), error_policy=THREE)
    stack.actor("a1", frame, state={"before": 1})
    stack.send("a1", "m1", "in")
    before = len(fixed.calls)

    assert stack.run() == {"batchItemFailures": []}  # final at once: not retryable

    assert len(fixed.calls) - before == 1  # within max_attempts endpoint calls (just one)
    message = stack.messages.get("a1", "m1")
    assert message is not None
    assert (message.status, message.attempts, message.disposition) == (
        "dead_lettered",
        1,
        "dead_letter",
    )
    assert message.error is not None
    assert (message.error["code"], message.error["error_code"]) == ("actor_failed", code)
    actor = stack.actors.get("a1")
    assert actor is not None and actor.state == {"before": 1} and actor.state_version == 0
    assert actor.last_actor_error is not None and actor.last_actor_error.error_code == code
    dlq = stack.drain(stack.queues["ActorMessagesDLQ"])
    assert [m["MessageAttributes"]["error_code"]["StringValue"] for m in dlq] == ["actor_failed"]


@pytest.mark.parametrize("frame", ["nan_state", "overflow_output"])
def test_a_non_finite_number_in_a_frame_is_invalid_payload_and_never_stored(
    stack: Stack, fixed: FixedFrames, frame: str
) -> None:
    stack.pool(frame, fixed.url(frame), error_policy=THREE)
    stack.actor("a1", frame, state={"before": 1})
    stack.send("a1", "m1")

    assert stack.run() == {"batchItemFailures": []}

    message = stack.messages.get("a1", "m1")
    assert message is not None and message.status == "dead_lettered"
    assert message.error is not None and message.error["code"] == "serverless_invalid_payload"
    actor = stack.actors.get("a1")
    assert actor is not None and actor.state == {"before": 1}


# --- the commit ----------------------------------------------------------------------------


class ScriptedClient:
    """The real boto3 client, except that ``transact_write_items`` raises the next scripted
    error first (a DynamoDB answer moto never gives)."""

    def __init__(self, inner: Any, errors: list[dict[str, Any]]) -> None:
        self.inner = inner
        self.errors = list(errors)
        self.transactions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        self.transactions += 1
        if self.errors:
            raise ClientError(self.errors.pop(0), "TransactWriteItems")
        return self.inner.transact_write_items(**kwargs)


def conflict() -> dict[str, Any]:
    return {
        "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
        "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}],
    }


def scripted_store(stack: Stack, errors: list[dict[str, Any]]) -> ScriptedClient:
    client = ScriptedClient(stack.deps.messages.client, errors)  # type: ignore[attr-defined]
    stack.deps.messages = DynamoDBMessageStore(
        stack.settings.messages_table,
        client=client,
        actors=stack.actors,
        slots=stack.deps.slots,  # type: ignore[arg-type]
        sleep=lambda s: None,
    )
    return client


def test_a_validation_exception_on_commit_is_final(stack: Stack, dev: DevRunner) -> None:
    refused = {"Error": {"Code": "ValidationException", "Message": "Item size has exceeded"}}
    client = scripted_store(stack, [refused] * 5)
    stack.pool("p", dev.url, error_policy=THREE)
    stack.actor("a1", "p")
    stack.send("a1", "m1")
    before = dev.start_requests

    assert stack.run() == {"batchItemFailures": []}

    assert dev.start_requests - before == 1 and client.transactions == 1
    message = stack.messages.get("a1", "m1")
    assert message is not None and (message.status, message.attempts) == ("dead_lettered", 1)
    assert message.error is not None and message.error["code"] == "store_commit_failed"
    assert message.error["aws_code"] == "ValidationException"


def test_transaction_conflicts_are_retried_a_bounded_number_of_times(
    stack: Stack, dev: DevRunner
) -> None:
    client = scripted_store(stack, [conflict()] * (CONFLICT_TRIES - 1))
    stack.pool("p", dev.url, error_policy=THREE)
    stack.actor("a1", "p")
    stack.send("a1", "m1", 5)

    assert stack.run() == {"batchItemFailures": []}

    assert client.transactions == CONFLICT_TRIES  # three conflicts, then the commit
    message = stack.messages.get("a1", "m1")
    assert message is not None and (message.status, message.attempts) == ("succeeded", 1)


def test_conflicts_past_the_bound_fail_the_attempt_and_the_policy_retries(
    stack: Stack, dev: DevRunner
) -> None:
    client = scripted_store(stack, [conflict()] * CONFLICT_TRIES)
    stack.pool("p", dev.url, error_policy=THREE)
    stack.actor("a1", "p")
    stack.send("a1", "m1", 5)
    event = stack.receive()

    assert failures(stack.run(event)) == {event["Records"][0]["messageId"]}

    assert client.transactions == CONFLICT_TRIES
    message = stack.messages.get("a1", "m1")
    assert message is not None and (message.status, message.disposition) == ("pending", "retry")
    assert message.error is not None and message.error["code"] == "store_commit_failed"
    # The next attempt commits (the conflicts are over).
    again = stack.receive()
    while not again["Records"]:
        again = stack.receive()
    assert stack.run(again) == {"batchItemFailures": []}
    message = stack.messages.get("a1", "m1")
    assert message is not None and (message.status, message.attempts) == ("succeeded", 2)


def test_the_store_raises_store_commit_failed_after_the_bound(stack: Stack) -> None:
    from datetime import UTC, datetime

    client = scripted_store(stack, [conflict()] * CONFLICT_TRIES)
    stack.actor("a1", "p")
    stack.messages.create(MessageRecord(actor_id="a1", message_id="m1"))
    now = datetime.now(UTC)
    store = stack.deps.messages
    assert store.claim("a1", "m1", owner="o", lease_s=60, now=now).outcome == "claimed"
    with pytest.raises(StoreCommitFailedError, match="TransactionConflict"):
        store.commit_success("a1", "m1", owner="o", expected_version=0, state=1, result=1, now=now)
    assert client.transactions == CONFLICT_TRIES


# --- stopping ------------------------------------------------------------------------------


def test_stopping_is_retried_with_the_policys_backoff(stack: Stack, dev: DevRunner) -> None:
    stack.deps.rand = lambda: 0.5
    stack.pool("p", dev.fault_url("stopping"), error_policy=ErrorPolicy(backoff_base_s=8))
    stack.actor("a1", "p")
    stack.send("a1", "m1")
    event = stack.receive()

    assert failures(stack.run(event)) == {event["Records"][0]["messageId"]}

    message = stack.messages.get("a1", "m1")
    assert message is not None and (message.status, message.attempts) == ("pending", 1)
    assert message.next_attempt_at is not None and message.updated_at is not None
    # Half of the first backoff (8 s, rand 0.5): 4 s, not 0 as before.
    assert (message.next_attempt_at - message.updated_at).total_seconds() == pytest.approx(4, 0.1)
    assert stack.receive()["Records"] == []  # invisible for that backoff


# --- the queue's redrive limit -------------------------------------------------------------


def no_slot_free(stack: Stack, dev: DevRunner) -> None:
    """Actor a1 with message m1 in pool ``full``, whose only slot another Lambda holds; the
    host hands back at once instead of waiting for it."""
    stack.deps.settings = stack.settings.model_copy(update={"slot_wait_s": 0.0})
    stack.pool("full", dev.url, max_runners=1)
    stack.actor("a1", "full")
    stack.messages.create(MessageRecord(actor_id="a1", message_id="m1"))
    now = stack.deps.clock.now().timestamp()
    held = stack.deps.slots.acquire("ns/full", total=1, owner="other-lambda", lease_s=600, now=now)
    assert held is not None


def test_a_record_handed_back_to_the_redrive_limit_is_dead_lettered_with_its_own_code(
    stack: Stack, dev: DevRunner
) -> None:
    no_slot_free(stack, dev)
    # An earlier receive (98 of 100) is handed back as usual.
    early = sqs_event(sqs_record(envelope_body("a1", "m1"), group_id="a1", receive_count=98))
    assert len(failures(stack.run(early))) == 1
    message = stack.messages.get("a1", "m1")
    assert message is not None and message.status == "pending"

    # Receive 99: the queue would move it unrecorded after the next one; the host records it.
    late = sqs_event(sqs_record(envelope_body("a1", "m1"), group_id="a1", receive_count=99))
    assert stack.run(late) == {"batchItemFailures": []}

    message = stack.messages.get("a1", "m1")
    assert message is not None
    assert (message.status, message.disposition, message.attempts) == (
        "dead_lettered",
        "dead_letter",
        0,
    )
    assert message.error == {
        "code": "receive_limit_reached",
        "receive_count": 99,
        "max_receive_count": 100,
        "reason": "handed_back",
        "last_error": {"code": "no_capacity"},
    }
    dlq = stack.drain(stack.queues["ActorMessagesDLQ"])
    codes = [m["MessageAttributes"]["error_code"]["StringValue"] for m in dlq]
    assert codes == ["receive_limit_reached"]


def test_a_follower_held_back_at_the_redrive_limit_is_recorded_too(
    stack: Stack, dev: DevRunner
) -> None:
    no_slot_free(stack, dev)
    stack.messages.create(MessageRecord(actor_id="a1", message_id="m2"))
    # m1 was re-sent (a young record) and waits for a slot; m2 behind it is on its last receives.
    first = sqs_record(envelope_body("a1", "m1"), group_id="a1", receive_count=1)
    follower = sqs_record(envelope_body("a1", "m2"), group_id="a1", receive_count=99)

    response = stack.run(sqs_event(first, follower))

    assert failures(response) == {first["messageId"]}  # m1 kept; m2 finished here
    m2 = stack.messages.get("a1", "m2")
    assert m2 is not None and m2.status == "dead_lettered"
    assert m2.error is not None and (m2.error["code"], m2.error["reason"]) == (
        "receive_limit_reached",
        "held_back",
    )
    m1 = stack.messages.get("a1", "m1")
    assert m1 is not None and m1.status == "pending"


# --- order ---------------------------------------------------------------------------------


def test_a_later_message_never_runs_while_an_earlier_one_is_open(
    stack: Stack, dev: DevRunner
) -> None:
    stack.pool("p", dev.url)
    stack.actor("a1", "p")
    # m1 is created first but (as after moto's FIFO reordering) m2 is delivered first.
    stack.messages.create(MessageRecord(actor_id="a1", message_id="m1", input=1))
    stack.messages.create(MessageRecord(actor_id="a1", message_id="m2", input=2))
    before = dev.start_requests
    m2_first = sqs_event(sqs_record(envelope_body("a1", "m2"), group_id="a1"))

    assert len(failures(stack.run(m2_first))) == 1  # handed back

    assert dev.start_requests == before
    m2 = stack.messages.get("a1", "m2")
    assert m2 is not None and (m2.status, m2.attempts) == ("pending", 0)
    # m1 runs, then m2 does.
    m1 = sqs_event(sqs_record(envelope_body("a1", "m1"), group_id="a1"))
    assert stack.run(m1) == {"batchItemFailures": []}
    assert stack.run(m2_first) == {"batchItemFailures": []}
    actor = stack.actors.get("a1")
    assert actor is not None and actor.state == {"count": 2, "last_input": 2}
    inputs = [r.body.get("input") for r in dev.received[-2:]]
    assert inputs == [1, 2]


def test_a_stale_order_index_naming_a_final_message_costs_one_read(
    stack: Stack, dev: DevRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.pool("p", dev.url)
    stack.actor("a1", "p")
    m1 = stack.messages.create(MessageRecord(actor_id="a1", message_id="m1", input=1))
    stack.messages.create(MessageRecord(actor_id="a1", message_id="m2", input=2))
    assert stack.run(sqs_event(sqs_record(envelope_body("a1", "m1"), group_id="a1"))) == {
        "batchItemFailures": []
    }
    # The open index is eventually consistent: right after m1 finished it may still name m1.
    store = stack.deps.messages
    monkeypatch.setattr(
        store, "oldest_open", lambda actor_id: ("m1", open_key(m1.created_at, "m1"))
    )
    loads: list[str] = []
    real_load = store.load

    def counting_load(actor_id: str, message_id: str) -> Any:
        loads.append(message_id)
        return real_load(actor_id, message_id)

    monkeypatch.setattr(store, "load", counting_load)

    assert stack.run(sqs_event(sqs_record(envelope_body("a1", "m2"), group_id="a1"))) == {
        "batchItemFailures": []
    }

    assert loads == ["m1"]  # the final m1 settles the guard; m2 itself is not read first
    m2 = stack.messages.get("a1", "m2")
    assert m2 is not None and m2.status == "succeeded"
