"""The SDK example behind the embedded local stack: real messages through API, SQS, actor_host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local.stack import LocalStack
from tests.helpers.http import http
from tests.helpers.local import quiet_stack
from tests.helpers.sdk import load_example, stdlib_host

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    environ = {"GATEWAY_READY_TIMEOUT_S": "20", "INIT_TIMEOUT_S": "10"}
    with quiet_stack(tick_s=1.0, environ=environ) as running:
        yield running


def test_the_sdk_example_runs_messages_through_the_local_stack(stack: LocalStack) -> None:
    with stdlib_host(load_example().app) as url:
        status, _, body = http(
            "PUT",
            f"{stack.api_url}/runner-configs/sdk/echo",
            {"url": url, "allow_private_network": True, "request_lifespan": 30},
        )
        assert status == 200, body
        status, _, body = http(
            "POST",
            f"{stack.api_url}/actors",
            {"actor_id": "sdk-1", "namespace": "sdk", "runner_name": "echo"},
        )
        assert status == 201, body
        results = []
        for n in (1, 2):
            status, _, body = http(
                "POST", f"{stack.api_url}/actors/sdk-1/messages?wait=true", {"input": {"n": n}}
            )
            assert status == 200, body
            assert body["status"] == "succeeded", body
            results.append(body["result"])
        _, _, actor = http("GET", f"{stack.api_url}/actors/sdk-1")
    assert results == [{"echo": {"n": 1}, "count": 1}, {"echo": {"n": 2}, "count": 2}]
    assert actor["state"] == {"count": 2}
    assert "error" not in actor
