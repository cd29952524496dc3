"""The actor host's defaults and limits on the embedded stack (`runner-kit local`): the HTTP API,
SQS pollers feeding actor_host with the template's timeout (300 s) counting down, the dev runner.

A config with only ``url`` runs; a dead letter is retried through the API and by an SQS redrive.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.stack import LocalStack
from tests.helpers.http import http, wait_for
from tests.helpers.local import quiet_stack

pytestmark = pytest.mark.integration

FAST = {"INIT_TIMEOUT_S": "2", "IDLE_TIMEOUT_S": "2", "GATEWAY_READY_TIMEOUT_S": "20"}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with quiet_stack(tick_s=60.0, environ=FAST) as running:
        yield running


def _actor(stack: LocalStack, runner_name: str, actor_id: str) -> None:
    status, _, body = http(
        "POST",
        f"{stack.api_url}/actors",
        {"actor_id": actor_id, "namespace": "host", "runner_name": runner_name},
    )
    assert status == 201, body


def _message(stack: LocalStack, actor_id: str, message_id: str) -> dict[str, Any]:
    status, _, body = http("GET", f"{stack.api_url}/actors/{actor_id}/messages/{message_id}")
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def _final(stack: LocalStack, actor_id: str, message_id: str) -> dict[str, Any]:
    final = ("succeeded", "failed", "dead_lettered", "discarded")
    result: dict[str, Any] = wait_for(
        f"{message_id} final",
        lambda: (m := _message(stack, actor_id, message_id))["status"] in final and m,
        timeout_s=60,
    )
    return result


def test_a_config_with_only_a_url_runs_a_message_end_to_end(stack: LocalStack) -> None:
    assert stack.dev_runner is not None
    # Only the URL (and loopback allowed): request_lifespan is the default the API picks.
    status, _, config = http(
        "PUT",
        f"{stack.api_url}/runner-configs/host/plain",
        {"url": stack.dev_runner.url, "allow_private_network": True},
    )
    assert status == 200, config
    assert config["request_lifespan"] == 285  # 300 s timeout - 10 s margin - 5 s start allowance
    _actor(stack, "plain", "plain-1")

    status, _, body = http("POST", f"{stack.api_url}/actors/plain-1/messages", {"input": 7})
    assert status == 202, body

    message = _final(stack, "plain-1", body["message_id"])
    assert (message["status"], message["attempts"], message["result"]) == (
        "succeeded",
        1,
        {"echo": 7},
    )
    # The endpoint was told the lifespan it really has.
    starts = [r for r in stack.dev_runner.received if r.body.get("actor_id") == "plain-1"]
    assert [r.headers.get("x-runner-request-lifespan") for r in starts] == ["285"]


def test_a_lifespan_the_host_can_never_fit_is_refused_when_saved(stack: LocalStack) -> None:
    assert stack.dev_runner is not None
    status, _, body = http(
        "PUT",
        f"{stack.api_url}/runner-configs/host/long",
        {"url": stack.dev_runner.url, "allow_private_network": True, "request_lifespan": 290},
    )
    assert status == 422, body
    assert body["code"] == "runner_config_invalid"
    assert body["metadata"]["max_request_lifespan"] == 285


def test_a_dead_letter_is_retried_through_the_api_and_by_an_sqs_redrive(
    stack: LocalStack,
) -> None:
    runner = stack.dev_runner
    assert runner is not None
    status, _, _ = http(
        "PUT",
        f"{stack.api_url}/runner-configs/host/flaky",
        {
            "url": runner.url,
            "allow_private_network": True,
            "error_policy": {"max_attempts": 2, "backoff_base_s": 0.1, "backoff_max_s": 0.1},
        },
    )
    assert status == 200
    _actor(stack, "flaky", "flaky-1")
    runner.set_script(["http_503", "http_503"])  # both attempts fail: dead-lettered

    status, _, sent = http("POST", f"{stack.api_url}/actors/flaky-1/messages", {"input": 1})
    assert status == 202, sent
    mid = sent["message_id"]
    dead = _final(stack, "flaky-1", mid)
    assert (dead["status"], dead["attempts"], dead["error"]["code"]) == (
        "dead_lettered",
        2,
        "serverless_http_error",
    )

    # Not retryable while it is not a dead letter; a message that does not exist is a 404.
    status, _, body = http("POST", f"{stack.api_url}/actors/flaky-1/messages/nope/retry")
    assert (status, body["code"]) == (404, "message_not_found")

    # The endpoint is healthy again: the retry runs it with a fresh attempt budget.
    status, _, body = http("POST", f"{stack.api_url}/actors/flaky-1/messages/{mid}/retry")
    assert status == 202, body
    assert body["status"] == "pending"
    done = _final(stack, "flaky-1", mid)
    assert (done["status"], done["attempts"], done["result"]) == ("succeeded", 3, {"echo": 1})
    status, _, body = http("POST", f"{stack.api_url}/actors/flaky-1/messages/{mid}/retry")
    assert (status, body["code"], body["metadata"]["status"]) == (
        409,
        "message_not_retryable",
        "succeeded",
    )

    # A second message dead-letters; an operator redrives the DLQ into the inbox (what SQS's
    # redrive does: the same body): it runs again too.
    runner.set_script(["http_503", "http_503"])
    status, _, sent = http("POST", f"{stack.api_url}/actors/flaky-1/messages", {"input": 2})
    mid2 = sent["message_id"]
    assert _final(stack, "flaky-1", mid2)["status"] == "dead_lettered"
    sqs = stack.sqs
    dlq = stack.queue_urls["ActorMessagesDLQ"]
    seen: list[dict[str, Any]] = []

    def dead_letter_of_mid2() -> dict[str, Any] | None:
        # FIFO: the first message's dead letter (same group) comes first; take both out.
        for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", []):
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
            seen.append(m)
        return next((m for m in seen if json.loads(m["Body"])["message_id"] == mid2), None)

    letter = wait_for("the dead letter in the DLQ", dead_letter_of_mid2)
    assert json.loads(letter["Body"])["dead_letter"]["error_code"] == "serverless_http_error"
    sqs.send_message(
        QueueUrl=stack.queue_urls["ActorMessagesQueue"],
        MessageBody=letter["Body"],
        MessageGroupId="flaky-1",
        MessageDeduplicationId=f"redrive-{mid2}",
    )
    redriven = wait_for(
        "the redriven message to run again",
        lambda: (m := _message(stack, "flaky-1", mid2))["status"] == "succeeded" and m,
        timeout_s=60,
    )
    assert (redriven["attempts"], redriven["result"]) == (3, {"echo": 2})
