"""End to end on the embedded stack: HTTP API -> SQS -> actor_host -> dev runner -> result.

The real handlers, the real dev runner endpoint, moto over HTTP; nothing faked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.stack import LocalStack
from tests.helpers.http import http, wait_for
from tests.helpers.local import FAST, quiet_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    hold = {"hang_s": 3.0, "slow_init_s": 3.0}
    with quiet_stack(tick_s=1.0, environ=FAST, dev_runner_options=hold) as running:
        yield running


def _pool(stack: LocalStack, runner_name: str, url: str) -> None:
    status, _, body = http(
        "PUT",
        f"{stack.api_url}/runner-configs/e2e/{runner_name}",
        {
            "url": url,
            "allow_private_network": True,
            "request_lifespan": 30,
            "error_policy": {"backoff_base_s": 1, "backoff_max_s": 1},
        },
    )
    assert status == 200, body


def _actor(stack: LocalStack, runner_name: str, actor_id: str) -> None:
    status, _, body = http(
        "POST",
        f"{stack.api_url}/actors",
        {"actor_id": actor_id, "namespace": "e2e", "runner_name": runner_name, "state": {}},
    )
    assert status == 201, body


def test_one_message_end_to_end_through_the_http_api(stack: LocalStack) -> None:
    assert stack.dev_runner is not None
    _pool(stack, "echo", stack.dev_runner.url)
    _actor(stack, "echo", "e2e-1")

    status, headers, body = http(
        "POST", f"{stack.api_url}/actors/e2e-1/messages?wait=true", {"input": {"n": 1}}
    )

    assert status == 200, body
    assert body["status"] == "succeeded"
    assert body["result"] == {"echo": {"n": 1}}
    assert headers["Location"] == f"/actors/e2e-1/messages/{body['message_id']}"
    _, _, actor = http("GET", f"{stack.api_url}/actors/e2e-1")
    assert actor["state"] == {"count": 1, "last_input": {"n": 1}}
    assert actor["state_version"] == 1
    assert stack.batches >= 1


def test_outage_fails_fast_then_the_pool_manager_clears_it(stack: LocalStack) -> None:
    assert stack.dev_runner is not None
    _pool(stack, "flaky", stack.dev_runner.url)
    _actor(stack, "flaky", "e2e-2")
    stack.dev_runner.set_fault("http_503")
    try:
        status, headers, body = http(
            "POST", f"{stack.api_url}/actors/e2e-2/messages?wait=true", {"input": "x"}
        )
        assert status == 503, body
        assert body["code"] == "actor_runner_failed"
        assert body["metadata"]["pool_error"]["error"]["status_code"] == 503
        assert "Retry-After" in headers

        def pool_error() -> Any:
            _, _, config = http("GET", f"{stack.api_url}/runner-configs/e2e/flaky")
            return config.get("pool_error")

        assert pool_error() is not None
    finally:
        stack.dev_runner.set_fault(None)
    # Healthy again: probes by the pool manager ticker (and the retried message) clear it.
    wait_for("the pool error to clear", lambda: pool_error() is None)
    assert stack.ticks >= 1
    message_id = body["metadata"]["message_id"]
    done = wait_for(
        "the outage message to succeed",
        lambda: (
            (m := http("GET", f"{stack.api_url}/actors/e2e-2/messages/{message_id}")[2])
            and m["status"] == "succeeded"
            and m
        ),
    )
    assert done["attempts"] >= 2
