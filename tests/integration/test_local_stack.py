"""The embedded local stack: template-made resources, the SQS event source mapping, the HTTP API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.host_loop import failed_ids
from infra.local.http import api_gateway_event
from infra.local.lambda_runtime import ACTOR_HOST_FUNCTION, LambdaContext
from infra.local.stack import LocalStack
from infra.template import function_specs, queue_specs
from tests.helpers.clock import T0, FakeClock
from tests.helpers.http import wait_for

# ------------------------------------------------------------------ pure shapes


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param(None, set(), id="none_means_all_succeeded"),
        pytest.param({"batchItemFailures": []}, set(), id="empty_failures"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}, id="one_failed"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": "zz"}]}, {"a", "b"}, id="unknown"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}, id="empty_id"),
        pytest.param("oops", {"a", "b"}, id="unreadable_answer"),
    ],
)
def test_partial_batch_answer_is_read_like_lambda(response: Any, expected: set[str]) -> None:
    records = [{"messageId": "a"}, {"messageId": "b"}]
    assert failed_ids(response, records) == expected


def test_api_event_has_the_rest_proxy_shape() -> None:
    event = api_gateway_event(
        "POST", "/actors/a1/messages?wait=true&x=1", {"Host": "h"}, b'{"input": 1}'
    )
    assert event["httpMethod"] == "POST"
    assert event["path"] == "/actors/a1/messages"
    assert event["queryStringParameters"] == {"wait": "true", "x": "1"}
    assert event["pathParameters"] == {"proxy": "actors/a1/messages"}
    assert event["requestContext"]["stage"] == "local"
    assert json.loads(event["body"]) == {"input": 1}
    assert event["isBase64Encoded"] is False


def test_api_event_time_is_the_clock_s() -> None:
    event = api_gateway_event("GET", "/actors", {}, b"", clock=FakeClock())
    assert event["requestContext"]["requestTimeEpoch"] == int(T0.timestamp() * 1000)


def test_the_lambda_context_counts_down_on_its_clock() -> None:
    clock = FakeClock()
    context = LambdaContext("runner-kit-local-x", 128, timeout_s=10, clock=clock)
    assert context.get_remaining_time_in_millis() == 10_000
    clock.advance(2.5)
    assert context.get_remaining_time_in_millis() == 7_500
    clock.advance(60)
    assert context.get_remaining_time_in_millis() == 0


def test_function_specs_come_from_the_template() -> None:
    specs = function_specs()
    host = specs[ACTOR_HOST_FUNCTION]
    assert host.sqs_queue == "ActorMessagesQueue"
    assert host.batch_size == 10
    assert host.timeout_s == 300
    assert host.module == "functions.actor_host.app"
    assert specs["ApiFunction"].timeout_s == 29


# ------------------------------------------------------------------ the event source mapping


class FakeActorHost:
    """Stands in for actor_host: fails the messages whose body says so, records contexts."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []
        self.lock = threading.Lock()
        self.stack: LocalStack | None = None

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = event["Records"]
        with self.lock:
            self.calls.append(
                ([r["body"] for r in records], context.get_remaining_time_in_millis())
            )
        for r in records:
            if "poison" in r["body"] and self.stack is not None:
                # Retry at once (as a backoff of 0 would), so redrive is reached quickly.
                self.stack.sqs.change_message_visibility(
                    QueueUrl=self.stack.queue_urls["ActorMessagesQueue"],
                    ReceiptHandle=r["receiptHandle"],
                    VisibilityTimeout=0,
                )
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]}
                for r in records
                if "fail" in r["body"] or "poison" in r["body"]
            ]
        }


@pytest.fixture(scope="module")
def fake_stack() -> Iterator[tuple[LocalStack, FakeActorHost]]:
    fake = FakeActorHost()
    stack = LocalStack(
        api_port=0, tick_s=3600, dev_runner=False, quiet=True, handlers={ACTOR_HOST_FUNCTION: fake}
    )
    fake.stack = stack
    with stack:
        yield stack, fake


def _counts(stack: LocalStack) -> tuple[int, int]:
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.queue_urls["ActorMessagesQueue"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"]),
        int(attrs["ApproximateNumberOfMessagesNotVisible"]),
    )


def test_poller_deletes_successes_and_keeps_only_failures(
    fake_stack: tuple[LocalStack, FakeActorHost],
) -> None:
    stack, fake = fake_stack
    url = stack.queue_urls["ActorMessagesQueue"]
    stack.sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {
                "Id": str(i),
                "MessageBody": body,
                "MessageGroupId": f"g{i}",
                "MessageDeduplicationId": f"d{i}-{body}",
            }
            for i, body in enumerate(["ok-1", "fail-2", "ok-3"])
        ],
    )

    def handed() -> list[str]:
        with fake.lock:
            return sorted(b for batch, _ in fake.calls for b in batch)

    # They may come in more than one batch (ReceiveMessage returns what it has).
    wait_for("the three messages to be handed to actor_host", lambda: len(handed()) >= 3)
    assert handed() == ["fail-2", "ok-1", "ok-3"]
    # The failed one stays (invisible for the queue's visibility timeout); the others are gone.
    assert wait_for("successes deleted", lambda: _counts(stack) == (0, 1) or None)
    remaining = max(ms for _, ms in fake.calls)
    timeout_ms = function_specs()[ACTOR_HOST_FUNCTION].timeout_s * 1000
    assert 0 < remaining <= timeout_ms


def test_a_message_that_always_fails_is_redriven_by_the_queue(
    fake_stack: tuple[LocalStack, FakeActorHost],
) -> None:
    stack, fake = fake_stack
    stack.sqs.send_message(
        QueueUrl=stack.queue_urls["ActorMessagesQueue"],
        MessageBody="poison-1",
        MessageGroupId="poison",
        MessageDeduplicationId="poison-1",
    )
    dlq = stack.queue_urls["ActorMessagesDLQ"]

    def dead_lettered() -> list[dict[str, Any]]:
        got = stack.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0)
        return list(got.get("Messages", []))

    moved = wait_for("the poison message in the DLQ", dead_lettered)
    assert [m["Body"] for m in moved] == ["poison-1"]
    with fake.lock:
        deliveries = sum(batch.count("poison-1") for batch, _ in fake.calls)
    # maxReceiveCount from template.yaml: the queue itself moved it, the poller never did.
    assert deliveries == queue_specs()["ActorMessagesQueue"].max_receive_count


def test_environment_points_handlers_at_local_resources(
    fake_stack: tuple[LocalStack, FakeActorHost],
) -> None:
    import os

    from adapters.settings import get_settings

    stack, _ = fake_stack
    settings = get_settings()
    assert settings.actors_table == stack.table_names["ActorsTable"]
    assert settings.actor_messages_queue_url == stack.queue_urls["ActorMessagesQueue"]
    assert settings.actor_messages_dlq_url == stack.queue_urls["ActorMessagesDLQ"]
    assert os.environ["AWS_ENDPOINT_URL_DYNAMODB"] == stack.moto.url
    described = stack.describe()
    assert stack.api_url in described and stack.moto.url in described


def test_stop_restores_the_environment() -> None:
    import os

    before = dict(os.environ)
    stack = LocalStack(
        api_port=0,
        tick_s=3600,
        dev_runner=False,
        quiet=True,
        handlers={ACTOR_HOST_FUNCTION: FakeActorHost()},
    )
    with stack:
        assert os.environ["ACTORS_TABLE"] == stack.table_names["ActorsTable"]
    assert dict(os.environ) == before
