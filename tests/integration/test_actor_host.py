"""actor_host end to end: moto server (SQS + DynamoDB over HTTP, from template.yaml), the real
stores, tracker and SSE client, and the dev runner endpoint on 127.0.0.1.

Events come from the real queue (``receive_event``), shaped like ``sam local generate-event sqs
receive-message``, and go through ``lambda_handler``'s ``handle``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from adapters.runner.client import AsyncRunnerClient
from adapters.tracker import build_tracker
from core.errors import RunnerNoResponse
from core.models import ErrorPolicy, MessageRecord
from infra.dev_runner import DevRunner
from tests.fixtures.sqs_events import (
    envelope_body,
    sqs_event,
    sqs_record,
)
from tests.helpers.clock import FakeClock
from tests.helpers.host import LIMITS, Stack, failures
from tests.helpers.host import dev as dev  # a fixture
from tests.helpers.host import stack as stack  # a fixture

pytestmark = pytest.mark.integration


def pool_error_code(stack: Stack, pool: str) -> str | None:
    from core.models import PoolKey

    status = build_tracker(stack.settings).active_error(PoolKey(namespace="ns", runner_name=pool))
    return status.error.code if status else None


# --- the happy path ------------------------------------------------------------------------


def test_success_commits_state_and_result_and_replies(stack: Stack, dev: DevRunner) -> None:
    stack.pool("echo", dev.url)
    stack.actor("a1", "echo", state={"count": 4})
    reply_to = stack.reply_queue()
    stack.send("a1", "m1", {"hello": 1}, reply_to=reply_to)

    response = stack.run()

    assert response == {"batchItemFailures": []}
    actor = stack.actors.get("a1")
    assert actor is not None
    assert actor.state == {"count": 5, "last_input": {"hello": 1}}
    assert actor.state_version == 1 and actor.failure_reason is None
    message = stack.messages.get("a1", "m1")
    assert message is not None
    assert message.status == "succeeded" and message.result == {"echo": {"hello": 1}}
    assert message.attempts == 1 and message.runner_id
    replies = [json.loads(m["Body"]) for m in stack.drain(reply_to)]
    assert replies == [
        {
            "v": 1,
            "actor_id": "a1",
            "message_id": "m1",
            "status": "succeeded",
            "attempts": 1,
            "result": {"echo": {"hello": 1}},
        }
    ]
    assert pool_error_code(stack, "echo") is None


# --- each fault: failure reason, message status, tracker state, retry visibility -----------


@pytest.mark.parametrize(
    ("fault", "status", "error_code", "pool_error", "failure_reason", "kept"),
    [
        pytest.param(
            "http_503", "pending", "serverless_http_error", "serverless_http_error", None, True,
            id="http_503_retried",
        ),
        pytest.param(
            "http_404", "dead_lettered", "serverless_http_error", "serverless_http_error", None,
            False, id="http_404_not_retryable",
        ),
        pytest.param(
            "close_before_init", "pending", "serverless_stream_ended_early",
            "serverless_stream_ended_early", None, True, id="ended_before_init",
        ),
        pytest.param(
            "garbage_base64", "dead_lettered", "serverless_invalid_base64",
            "serverless_invalid_base64", None, False, id="garbage_base64_not_retryable",
        ),
        pytest.param(
            "wrong_content_type", "pending", "serverless_connection_error",
            "serverless_connection_error", None, True, id="wrong_content_type",
        ),
        pytest.param(
            "init_then_close", "pending", "runner_no_response", None, "runner_no_response", True,
            id="init_then_close",
        ),
        pytest.param(
            "init_then_silence", "pending", "runner_no_response", None, "runner_no_response",
            True, id="init_then_silence",
        ),
        pytest.param(
            "actor_error", "dead_lettered", "actor_failed", None, None, False,
            id="actor_error_not_retryable",
        ),
        pytest.param(
            "actor_error_retryable", "pending", "actor_failed", None, None, True,
            id="actor_error_retryable",
        ),
        pytest.param(
            "stopping", "pending", "runner_no_response", None, None, True, id="stopping",
        ),
    ],
)  # fmt: skip
def test_fault_outcomes(
    stack: Stack,
    dev: DevRunner,
    fault: str,
    status: str,
    error_code: str,
    pool_error: str | None,
    failure_reason: str | None,
    kept: bool,
) -> None:
    stack.pool("p", dev.fault_url(fault))
    stack.actor("a1", "p", state={"count": 1})
    stack.send("a1", "m1", "x")
    event = stack.receive()

    response = stack.run(event)

    sqs_id = event["Records"][0]["messageId"]
    assert failures(response) == ({sqs_id} if kept else set())
    message = stack.messages.get("a1", "m1")
    assert message is not None
    assert message.status == status
    assert message.error is not None and message.error["code"] == error_code
    assert message.attempts == 1
    assert message.disposition == ("retry" if kept else "dead_letter")
    actor = stack.actors.get("a1")
    assert actor is not None
    assert actor.state == {"count": 1} and actor.state_version == 0  # nothing committed
    assert (actor.failure_reason.code if actor.failure_reason else None) == failure_reason
    assert pool_error_code(stack, "p") == pool_error
    events = actor.extra["errors"]["events"]
    assert [e["code"] for e in events] == [error_code]
    if kept:
        # Backoff 0 through ChangeMessageVisibility: the retry is visible again at once
        # (the queue's own visibility timeout is 30 minutes).
        again = stack.receive()
        assert [r["messageId"] for r in again["Records"]] == [sqs_id]
        assert again["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    else:
        dlq = stack.drain(stack.queues["ActorMessagesDLQ"])
        # The envelope, plus the mark that lets an SQS redrive of it run it again.
        assert [json.loads(m["Body"]) for m in dlq] == [
            {
                "v": 1,
                "actor_id": "a1",
                "message_id": "m1",
                "dead_letter": {"retries": 0, "error_code": error_code},
            }
        ]
        attrs = dlq[0]["MessageAttributes"]
        assert attrs["error_code"]["StringValue"] == error_code


def test_actor_error_is_remembered_on_the_actor(stack: Stack, dev: DevRunner) -> None:
    stack.pool("p", dev.fault_url("actor_error"))
    stack.actor("a1", "p")
    stack.send("a1", "m1")
    stack.run()
    actor = stack.actors.get("a1")
    assert actor is not None and actor.last_actor_error is not None
    message = stack.messages.get("a1", "m1")
    assert message is not None and message.error is not None
    assert message.error["error_code"] == actor.last_actor_error.error_code


def test_retry_backoff_sets_visibility_and_next_attempt(stack: Stack, dev: DevRunner) -> None:
    stack.deps.rand = lambda: 0.999
    policy = ErrorPolicy(backoff_base_s=600, backoff_max_s=600)
    stack.pool("p", dev.fault_url("http_503"), error_policy=policy)
    stack.actor("a1", "p")
    stack.send("a1", "m1")
    stack.run()
    message = stack.messages.get("a1", "m1")
    assert message is not None and message.next_attempt_at is not None
    assert message.updated_at is not None
    delay = (message.next_attempt_at - message.updated_at).total_seconds()
    assert 590 < delay <= 600
    assert stack.receive() == {"Records": []}  # hidden for its backoff


def test_dead_letter_after_last_attempt_and_sender_told(stack: Stack, dev: DevRunner) -> None:
    stack.pool("p", dev.fault_url("http_503"), error_policy=ErrorPolicy(max_attempts=2))
    stack.actor("a1", "p")
    reply_to = stack.reply_queue()
    stack.send("a1", "m1", reply_to=reply_to)

    first = stack.run()
    assert len(first["batchItemFailures"]) == 1
    assert stack.drain(reply_to) == []  # a scheduled retry is not an outcome
    second = stack.run()

    assert second == {"batchItemFailures": []}
    message = stack.messages.get("a1", "m1")
    assert message is not None
    assert (message.status, message.attempts, message.disposition) == (
        "dead_lettered",
        2,
        "dead_letter",
    )
    dlq = stack.drain(stack.queues["ActorMessagesDLQ"])
    assert len(dlq) == 1
    assert dlq[0]["MessageAttributes"]["attempts"]["StringValue"] == "2"
    replies = [json.loads(m["Body"]) for m in stack.drain(reply_to)]
    assert len(replies) == 1
    assert replies[0]["status"] == "dead_lettered"
    assert replies[0]["error"]["code"] == "serverless_http_error"
    assert replies[0]["error"]["status_code"] == 503
    assert stack.receive() == {"Records": []}  # acked: nothing left in the queue


# --- policy: discard, stop -----------------------------------------------------------------


def test_discard_policy_drops_the_message(stack: Stack, dev: DevRunner) -> None:
    stack.pool("p", dev.fault_url("http_503"), error_policy=ErrorPolicy(on_message="discard"))
    stack.actor("a1", "p")
    stack.send("a1", "m1")
    assert stack.run() == {"batchItemFailures": []}
    message = stack.messages.get("a1", "m1")
    assert message is not None and (message.status, message.disposition) == ("discarded", "discard")
    assert stack.drain(stack.queues["ActorMessagesDLQ"]) == []


def test_stop_policy_stops_the_actor_and_holds_later_messages(stack: Stack, dev: DevRunner) -> None:
    stack.pool("p", dev.fault_url("actor_error"))
    stack.actor("a1", "p", error_policy=ErrorPolicy(on_actor="stop", on_message="discard"))
    reply_to = stack.reply_queue()
    stack.send("a1", "m1")
    stack.send("a1", "m2", reply_to=reply_to)
    before = dev.start_requests

    # m1 fails for good (acked); the stopped actor holds m2 (pending, out of the queue) until
    # POST /actors/a1/resume queues it again.
    assert stack.run() == {"batchItemFailures": []}

    actor = stack.actors.get("a1")
    assert actor is not None and actor.status == "stopped"
    assert actor.last_actor_error is not None
    assert actor.stop_error is not None and actor.stop_error.code == "actor_failed"
    m1 = stack.messages.get("a1", "m1")
    m2 = stack.messages.get("a1", "m2")
    assert m1 is not None and (m1.status, m1.disposition) == ("discarded", "discard")
    assert m2 is not None and (m2.status, m2.disposition, m2.attempts) == ("pending", "stop", 0)
    assert m2.error is not None and m2.error["code"] == "actor_failed"
    assert dev.start_requests - before == 1  # m2 never reached a runner
    assert stack.drain(reply_to) == []  # not final: the sender hears when it finally runs
    assert stack.receive() == {"Records": []}  # nothing left queued


# --- FIFO: one actor in order, a failure holds back only its own group ----------------------


def test_failing_message_holds_back_only_its_own_actor(stack: Stack, dev: DevRunner) -> None:
    stack.pool("bad", dev.fault_url("http_503"))
    stack.pool("good", dev.url)
    stack.actor("a-bad", "bad")
    stack.actor("a-good", "good")
    # Message ids are unique per queue (moto dedupes queue-wide, whatever the scope).
    for i in range(3):
        stack.send("a-bad", f"bad{i}", i)
        stack.send("a-good", f"good{i}", i)
    event = stack.receive(at_least=6)
    assert len(event["Records"]) == 6
    before = dev.start_requests

    response = stack.run(event)

    bad_ids = {
        r["messageId"] for r in event["Records"] if r["attributes"]["MessageGroupId"] == "a-bad"
    }
    assert failures(response) == bad_ids
    assert dev.start_requests - before == 1 + 3  # one bad attempt, three good runs
    good = stack.actors.get("a-good")
    assert good is not None and good.state == {"count": 3, "last_input": 2}  # in order
    statuses = [stack.messages.get("a-bad", f"bad{i}").status for i in range(3)]  # type: ignore[union-attr]
    assert statuses == ["pending", "pending", "pending"]
    attempts = [stack.messages.get("a-bad", f"bad{i}").attempts for i in range(3)]  # type: ignore[union-attr]
    assert attempts == [1, 0, 0]


# --- exactly once --------------------------------------------------------------------------


def test_duplicate_delivery_commits_once_and_replies_once(stack: Stack, dev: DevRunner) -> None:
    stack.pool("echo", dev.url)
    stack.actor("a1", "echo")
    reply_to = stack.reply_queue()
    stack.send("a1", "m1", "x", reply_to=reply_to)
    event = stack.receive()
    before = dev.start_requests

    assert stack.run(event) == {"batchItemFailures": []}
    # The same SQS message delivered again (at-least-once), as the same record.
    assert stack.run(event) == {"batchItemFailures": []}

    assert dev.start_requests - before == 1
    actor = stack.actors.get("a1")
    assert (
        actor is not None
        and actor.state_version == 1
        and actor.state
        == {
            "count": 1,
            "last_input": "x",
        }
    )
    assert len(stack.drain(reply_to)) == 1


def test_concurrent_duplicates_run_once(stack: Stack, dev: DevRunner) -> None:
    stack.pool("slow", dev.delay_url(300))
    stack.actor("a1", "slow")
    stack.messages.create(MessageRecord(actor_id="a1", message_id="m1", input=1))
    body = envelope_body("a1", "m1")
    # Two deliveries of one message in different groups (as after a re-send), so they overlap.
    event = sqs_event(sqs_record(body, group_id="g1"), sqs_record(body, group_id="g2"))
    before = dev.start_requests

    response = stack.run(event)

    assert dev.start_requests - before == 1
    assert len(response["batchItemFailures"]) == 1  # the loser saw execution_busy
    actor = stack.actors.get("a1")
    assert actor is not None and actor.state_version == 1


# --- records that cannot run ---------------------------------------------------------------


def test_malformed_record_fails_alone(stack: Stack, dev: DevRunner) -> None:
    stack.pool("echo", dev.url)
    stack.actor("a1", "echo")
    stack.actor("a2", "echo")
    stack.messages.create(MessageRecord(actor_id="a1", message_id="m1", input=1))
    stack.messages.create(MessageRecord(actor_id="a1", message_id="m2", input=2))
    stack.messages.create(MessageRecord(actor_id="a2", message_id="m1", input=3))
    bad = sqs_record("{not json", group_id="a1")
    event = sqs_event(
        sqs_record(envelope_body("a1", "m1"), group_id="a1"),
        bad,
        sqs_record(envelope_body("a1", "m2"), group_id="a1"),
        sqs_record(envelope_body("a2", "m1"), group_id="a2"),
    )

    response = stack.run(event)

    assert response == {"batchItemFailures": []}
    a1 = stack.actors.get("a1")
    a2 = stack.actors.get("a2")
    assert a1 is not None and a1.state == {"count": 2, "last_input": 2}
    assert a2 is not None and a2.state == {"count": 1, "last_input": 3}
    dlq = stack.drain(stack.queues["ActorMessagesDLQ"])
    assert [m["Body"] for m in dlq] == ["{not json"]
    assert dlq[0]["MessageAttributes"]["error_code"]["StringValue"] == "malformed_envelope"


def test_missing_message_record_is_refused(stack: Stack, dev: DevRunner) -> None:
    stack.pool("echo", dev.url)
    stack.actor("a1", "echo")
    before = dev.start_requests
    event = sqs_event(sqs_record(envelope_body("a1", "ghost"), group_id="a1"))

    assert stack.run(event) == {"batchItemFailures": []}

    assert dev.start_requests == before
    dlq = stack.drain(stack.queues["ActorMessagesDLQ"])
    assert dlq[0]["MessageAttributes"]["error_code"]["StringValue"] == "missing_execution_id"
    assert stack.messages.get("a1", "ghost") is None


# --- deadline ------------------------------------------------------------------------------


def test_deadline_hands_back_what_cannot_finish(stack: Stack, dev: DevRunner) -> None:
    stack.pool("short", dev.url, request_lifespan=5)
    stack.pool("long", dev.url, request_lifespan=120)
    stack.actor("a-short", "short")
    stack.actor("a-long", "long")
    stack.send("a-short", "s1")
    stack.send("a-long", "l1")
    event = stack.receive(at_least=2)
    long_id = next(
        r["messageId"] for r in event["Records"] if r["attributes"]["MessageGroupId"] == "a-long"
    )

    # 60 s left, 1 s margin: the 5 s execution fits, the 120 s one must not start.
    response = stack.run(event, remaining_ms=60_000)

    assert failures(response) == {long_id}
    long_msg = stack.messages.get("a-long", "l1")
    assert long_msg is not None and (long_msg.status, long_msg.attempts) == ("pending", 0)
    short_msg = stack.messages.get("a-short", "s1")
    assert short_msg is not None and short_msg.status == "succeeded"
    # Handed back with visibility 0: it is there for the next invocation, nothing is lost.
    again = stack.receive()
    assert [r["messageId"] for r in again["Records"]] == [long_id]


# --- concurrency cap -----------------------------------------------------------------------


class CountingRunner:
    """The real AsyncRunnerClient, counting how many of its streams are open at once."""

    def __init__(self, peak: list[int], lock: threading.Lock) -> None:
        self.inner = AsyncRunnerClient(LIMITS)
        self.peak = peak
        self.lock = lock

    @asynccontextmanager
    async def start(
        self, target: Any, body: Any, *, deadline: float | None = None
    ) -> AsyncIterator[Any]:
        async with self.inner.start(target, body, deadline=deadline) as frames:
            with self.lock:
                self.peak[0] += 1
                self.peak[1] = max(self.peak[1], self.peak[0])
            try:
                yield frames
            finally:
                with self.lock:
                    self.peak[0] -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_concurrency_cap_holds_under_a_burst(stack: Stack, dev: DevRunner) -> None:
    peak = [0, 0]  # [open now, most ever open]
    lock = threading.Lock()
    stack.deps.runner = lambda: CountingRunner(peak, lock)  # type: ignore[assignment,return-value]
    stack.pool("capped", dev.delay_url(200), max_runners=2)
    for i in range(6):
        stack.actor(f"a{i}", "capped")
        stack.messages.create(MessageRecord(actor_id=f"a{i}", message_id="m1", input=i))
    events = [
        sqs_event(*(sqs_record(envelope_body(f"a{i}", "m1"), group_id=f"a{i}") for i in ids))
        for ids in ((0, 1, 2), (3, 4, 5))
    ]
    # Two "Lambdas" at once, each with three actors: the cap is per pool, across both.
    results: list[Any] = []
    threads = [threading.Thread(target=lambda e=e: results.append(stack.run(e))) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert results == [{"batchItemFailures": []}] * 2
    assert peak[1] == 2
    for i in range(6):
        actor = stack.actors.get(f"a{i}")
        assert actor is not None and actor.state == {"count": 1, "last_input": i}
        assert actor.failure_reason is None  # no_capacity was cleared on init


@pytest.mark.parametrize(
    ("initial", "expected"),
    [
        pytest.param(None, "no_capacity", id="sets_no_capacity"),
        pytest.param(
            RunnerNoResponse(runner_id="r0"), "runner_no_response", id="never_masks_runner_failure"
        ),
    ],
)
def test_waiting_for_a_slot_sets_no_capacity_then_hands_back(
    stack: Stack, dev: DevRunner, initial: Any, expected: str
) -> None:
    stack.pool("full", dev.url, max_runners=1, request_lifespan=5)
    stack.actor("a1", "full", failure_reason=initial)
    stack.send("a1", "m1")
    # Another Lambda holds the pool's only slot for a long time.
    now = stack.deps.clock.now().timestamp()
    held = stack.deps.slots.acquire("ns/full", total=1, owner="other-lambda", lease_s=600, now=now)
    assert held is not None
    stack.deps.settings = stack.settings.model_copy(update={"slot_wait_s": 0.3})
    clock = FakeClock()
    stack.deps.sleep = clock.asleep  # the slot wait's pauses pass at once
    event = stack.receive()
    before = dev.start_requests

    # A short wait for a slot (slot_wait_s), then the record goes back to the queue: the Lambda
    # does not idle until its deadline.
    response = stack.run(event, remaining_ms=600_000)

    assert failures(response) == {event["Records"][0]["messageId"]}
    assert 0.3 - 0.2 < sum(clock.sleeps) <= 0.3  # polled for about slot_wait_s, no longer
    assert dev.start_requests == before
    actor = stack.actors.get("a1")
    assert actor is not None and actor.failure_reason is not None
    assert actor.failure_reason.code == expected
    message = stack.messages.get("a1", "m1")
    assert message is not None and (message.status, message.attempts) == ("pending", 0)
    assert message.error == {"code": "no_capacity"}  # the record says why it waits
    # Handed back with a visibility (at least 1 s), not at once: it does not spin the queue.
    assert stack.receive()["Records"] == []

    # The slot comes back, and the hand-back's visibility runs out (made so, not waited for):
    # the redelivery runs, and init clears no_capacity (only that code).
    stack.deps.slots.release(held)
    stack.sqs.change_message_visibility(
        QueueUrl=stack.queue.queue_url,
        ReceiptHandle=event["Records"][0]["receiptHandle"],
        VisibilityTimeout=0,
    )
    again = stack.receive()
    assert stack.run(again) == {"batchItemFailures": []}
    actor = stack.actors.get("a1")
    assert actor is not None and actor.state_version == 1
    assert actor.failure_reason is None  # the commit clears it: the actor just ran fine
