"""``runner-kit messages``, ``retry`` and ``resume`` against the real local stack.

They drive the routes of issue 14 (docs/operators.md): ``GET /actors/{id}/messages``,
``POST /actors/{id}/messages/{message_id}/retry`` and ``POST /actors/{id}/resume``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.stack import LocalStack
from tests.helpers.cli import assert_api_error, run_cli
from tests.helpers.http import http, wait_for
from tests.helpers.local import quiet_stack

pytestmark = pytest.mark.integration

NS = "lifecycle"
FAST = {"INIT_TIMEOUT_S": "2", "IDLE_TIMEOUT_S": "2", "PROBE_BACKOFF_BASE_S": "3600"}
DEAD_LETTER = {"on_message": "dead_letter", "max_attempts": 1, "backoff_base_s": 1}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with quiet_stack(tick_s=3600, environ=FAST) as s:
        assert s.dev_runner is not None
        body = {"url": s.dev_runner.url, "allow_private_network": True, "request_lifespan": 30}
        status, _, answer = http("PUT", f"{s.api_url}/runner-configs/{NS}/lc", body)
        assert status == 200, answer
        yield s


def _failed_message(stack: LocalStack, actor_id: str, policy: dict[str, Any]) -> dict[str, Any]:
    """An actor whose first message the endpoint fails (an actor error frame): its record."""
    body = {"actor_id": actor_id, "namespace": NS, "runner_name": "lc", "error_policy": policy}
    status, _, answer = http("POST", f"{stack.api_url}/actors", body)
    assert status == 201, answer
    assert stack.dev_runner is not None
    stack.dev_runner.set_script(["actor_error"])  # this message's start; then healthy again
    status, _, message = http(
        "POST", f"{stack.api_url}/actors/{actor_id}/messages?wait=true", {"input": "x"}
    )
    assert status == 200, message
    assert message["status"] == "dead_lettered", message
    return dict(message)


def _message(stack: LocalStack, actor_id: str, message_id: str) -> Any:
    return http("GET", f"{stack.api_url}/actors/{actor_id}/messages/{message_id}")[2]


def test_messages_lists_the_dead_lettered_message(stack: LocalStack) -> None:
    message = _failed_message(stack, "lc-list", DEAD_LETTER)
    argv = ["messages", "lc-list", "--api", stack.api_url]
    status, out, err = run_cli([*argv, "--status", "dead_lettered"])
    assert (status, err) == (0, "")
    header, row = out.splitlines()
    assert header.split()[:4] == ["MESSAGE", "STATUS", "ATTEMPTS", "DISPOSITION"]
    assert row.split()[:4] == [message["message_id"], "dead_lettered", "1", "dead_letter"]
    assert "actor_failed" in row
    status, out, _ = run_cli([*argv, "--json"])
    assert status == 0
    listed = json.loads(out)["messages"]
    assert [m["message_id"] for m in listed] == [message["message_id"]]
    assert listed[0]["error"]["code"] == "actor_failed"
    status, out, _ = run_cli([*argv, "--status", "succeeded"])
    assert (status, out) == (0, "no messages for actor lc-list\n")


def test_retry_runs_a_dead_lettered_message_again(stack: LocalStack) -> None:
    message = _failed_message(stack, "lc-retry", DEAD_LETTER)
    message_id = message["message_id"]
    status, out, err = run_cli(["retry", "lc-retry", message_id, "--api", stack.api_url])
    assert (status, err) == (0, "")
    assert out.startswith(f"message {message_id} of actor lc-retry queued again: status ")
    done = wait_for(
        "the retried message to succeed",
        lambda: (m := _message(stack, "lc-retry", message_id))["status"] == "succeeded" and m,
    )
    assert done["result"] == {"echo": "x"}
    # Succeeded now: not retryable any more; the API's code is printed, exit 1.
    argv = ["retry", "lc-retry", message_id, "--api", stack.api_url]
    assert_api_error(argv, "message_not_retryable", 409)


def test_resume_a_stopped_actor(stack: LocalStack) -> None:
    _failed_message(stack, "lc-stop", {**DEAD_LETTER, "on_actor": "stop"})
    status, out, _ = run_cli(["actors", "--api", stack.api_url, "--namespace", NS])
    assert status == 0
    row = next(line for line in out.splitlines() if line.startswith("lc-stop "))
    assert " stopped " in row
    argv = ["resume", "lc-stop", "--api", stack.api_url]
    status, out, err = run_cli(argv)
    assert (status, out, err) == (0, "actor lc-stop resumed: status active\n", "")
    status, out, err = run_cli(argv)
    assert (status, out) == (1, "")
    assert err.startswith("error: actor_not_stopped (HTTP 409): ")
