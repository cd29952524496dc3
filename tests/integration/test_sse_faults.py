"""Every dev runner fault, over real sockets on 127.0.0.1, the exact outcome."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.clock import SYSTEM_CLOCK
from adapters.runner.attempt import StartLimits
from adapters.runner.client import AsyncRunnerClient, RunnerClient, aprobe, probe
from adapters.runner.transport import StartTarget
from core.errors import (
    ServerlessConnectionError,
    ServerlessHttpError,
    ServerlessInvalidBase64,
    ServerlessInvalidPayload,
    ServerlessStreamEndedEarly,
)
from core.exceptions import RunnerError, RunnerNoResponseError
from core.models import PoolKey
from core.protocol import (
    DoneFrame,
    ErrorFrame,
    Frame,
    InitFrame,
    OutputFrame,
    StoppingFrame,
    start_body,
)
from infra.dev_faults import FAULTS
from infra.dev_runner import DevRunner
from tests.helpers.dev_runner import dev_runner_fixture

pytestmark = pytest.mark.integration

# Idle is longer than time-to-init so that a silent start is reported as a missing init.
LIMITS = StartLimits(connect_timeout_s=2.0, init_timeout_s=0.5, idle_timeout_s=0.7)


@dataclass(frozen=True)
class Outcome:
    frames: list[Frame]
    error: BaseException | None


runner = dev_runner_fixture(hang_s=10.0, slow_init_s=5.0)


def target(url: str) -> StartTarget:
    return StartTarget(
        url=url,
        headers={"Authorization": "Bearer dev-secret"},
        pool=PoolKey(namespace="ns", runner_name="dev"),
        total_slots=2,
        request_lifespan=60,
        allow_private_network=True,
    )


BODY = start_body("actor-1", "msg-1", {"count": 4}, {"hello": "world"})


def run(url: str, deadline: float | None = None) -> Outcome:
    """One start on the runner client (the sync callers go through the same client)."""

    async def main() -> Outcome:
        frames: list[Frame] = []
        async with AsyncRunnerClient(LIMITS) as client:
            try:
                async with client.start(target(url), BODY, deadline=deadline) as stream:
                    async for frame in stream:
                        frames.append(frame)
            except (RunnerError, RunnerNoResponseError) as exc:
                return Outcome(frames, exc)
        return Outcome(frames, None)

    return asyncio.run(main())


def conn(reason: str) -> Any:
    return lambda e: isinstance(e, ServerlessConnectionError) and e.reason == reason


DEV = "dev runner fault"

# fault -> a check of the pool error it must give
POOL_FAULTS: dict[str, Any] = {
    "http_500": lambda e: (
        e == ServerlessHttpError(status_code=500, body="dev runner fault http_500")
    ),
    "http_503": lambda e: (
        e == ServerlessHttpError(status_code=503, body="dev runner fault http_503")
    ),
    "http_500_multibyte": lambda e: e == ServerlessHttpError(status_code=500, body="a" * 510),
    "wrong_content_type": conn("content_type"),
    "empty_body": lambda e: isinstance(e, ServerlessStreamEndedEarly),
    "cut_mid_chunk": conn("read"),
    "close_before_init": lambda e: isinstance(e, ServerlessStreamEndedEarly),
    "garbage_base64": lambda e: e == ServerlessInvalidBase64(raw_payload="this is not base64!!"),
    "base64_not_json": lambda e: (
        isinstance(e, ServerlessInvalidPayload)
        and "not UTF-8 JSON" in e.message
        and e.raw_payload == "hello, not JSON"
    ),
    "wrong_schema": lambda e: (
        isinstance(e, ServerlessInvalidPayload) and "init.runner_id" in e.message
    ),
    "wrong_version": lambda e: (
        isinstance(e, ServerlessInvalidPayload) and "unsupported protocol version 2" in e.message
    ),
    "slow_init": lambda e: (
        e == ServerlessConnectionError(message="no init frame within 0.5 s", reason="timeout")
    ),
    "pings_forever": lambda e: (
        e == ServerlessConnectionError(message="no init frame within 0.5 s", reason="timeout")
    ),
    "oversized_event": lambda e: (
        e
        == ServerlessConnectionError(message="an event exceeded 1048576 bytes", reason="too_large")
    ),
    "redirect_metadata": lambda e: (
        isinstance(e, ServerlessConnectionError)
        and e.reason == "redirect"
        and "169.254.169.254" in e.message
    ),
}
AFTER_INIT_FAULTS: dict[str, Any] = {
    "init_then_silence": "no event for 0.7 s",
    "init_then_close": "stream ended without done",
}
ACTOR_FAULTS: dict[str, list[type]] = {
    "actor_error": [InitFrame, ErrorFrame],
    "actor_error_retryable": [InitFrame, ErrorFrame],
    "stopping": [InitFrame, OutputFrame, StoppingFrame],
    # what comes after done is ignored by the kit (runner-kit check reports it)
    "data_after_done": [InitFrame, OutputFrame, DoneFrame],
    "done_then_hold": [InitFrame, OutputFrame, DoneFrame],
    "buffered": [InitFrame, OutputFrame, DoneFrame],
}
# fault -> the frames before a final frame that does not decode, and the pool error's message
BROKEN_FINAL_FAULTS: dict[str, tuple[list[type], str]] = {
    "broken_done": ([InitFrame, OutputFrame], "invalid frame: done.state: Field required"),
}


def test_every_fault_has_an_expectation() -> None:
    assert set(POOL_FAULTS) | set(AFTER_INIT_FAULTS) | set(ACTOR_FAULTS) | set(
        BROKEN_FINAL_FAULTS
    ) == set(FAULTS)


@pytest.mark.parametrize("fault", sorted(BROKEN_FINAL_FAULTS))
def test_broken_final_frame_is_a_pool_error(runner: DevRunner, fault: str) -> None:
    outcome = run(runner.fault_url(fault))
    frames, message = BROKEN_FINAL_FAULTS[fault]
    assert [type(f) for f in outcome.frames] == frames
    assert isinstance(outcome.error, RunnerError)
    assert isinstance(outcome.error.error, ServerlessInvalidPayload)
    assert outcome.error.error.message == message


@pytest.mark.parametrize("fault", sorted(POOL_FAULTS))
def test_pool_faults_are_classified(runner: DevRunner, fault: str) -> None:
    outcome = run(runner.fault_url(fault))
    assert outcome.frames == []
    assert isinstance(outcome.error, RunnerError), outcome.error
    assert POOL_FAULTS[fault](outcome.error.error), outcome.error.error


@pytest.mark.parametrize("status", [401, 404, 429, 502])
def test_any_http_status(runner: DevRunner, status: int) -> None:
    outcome = run(f"{runner.url}/fault/http_{status}")
    assert isinstance(outcome.error, RunnerError)
    assert outcome.error.error == ServerlessHttpError(
        status_code=status, body=f"dev runner fault http_{status}"
    )


@pytest.mark.parametrize("fault", sorted(AFTER_INIT_FAULTS))
def test_after_init_faults_are_runner_no_response(runner: DevRunner, fault: str) -> None:
    outcome = run(runner.fault_url(fault))
    assert [type(f) for f in outcome.frames] == [InitFrame]
    assert isinstance(outcome.error, RunnerNoResponseError)
    init = outcome.frames[0]
    assert isinstance(init, InitFrame)
    assert outcome.error.reason.runner_id == init.runner_id
    assert outcome.error.detail == AFTER_INIT_FAULTS[fault]


@pytest.mark.parametrize("fault", sorted(ACTOR_FAULTS))
def test_actor_level_endings_are_frames(runner: DevRunner, fault: str) -> None:
    outcome = run(runner.fault_url(fault))
    assert outcome.error is None
    assert [type(f) for f in outcome.frames] == ACTOR_FAULTS[fault]
    last = outcome.frames[-1]
    if isinstance(last, ErrorFrame):
        assert last.retryable is (fault == "actor_error_retryable")


def test_healthy_run(runner: DevRunner) -> None:
    outcome = run(runner.url)
    assert outcome.error is None
    init, output, done = outcome.frames
    assert isinstance(init, InitFrame)
    assert output == OutputFrame(data={"echo": {"hello": "world"}})
    assert done == DoneFrame(
        output={"echo": {"hello": "world"}}, state={"count": 5, "last_input": {"hello": "world"}}
    )


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = run(f"http://127.0.0.1:{port}")
    assert isinstance(outcome.error, RunnerError)
    assert isinstance(outcome.error.error, ServerlessConnectionError)
    assert outcome.error.error.reason == "connect"


def test_caller_deadline_before_init(runner: DevRunner) -> None:
    outcome = run(runner.fault_url("slow_init"), deadline=SYSTEM_CLOCK.monotonic() + 0.2)
    assert isinstance(outcome.error, RunnerError)
    assert outcome.error.error == ServerlessConnectionError(
        message="the caller's deadline passed before init", reason="timeout"
    )


def test_caller_deadline_after_init(runner: DevRunner) -> None:
    outcome = run(runner.delay_url(3000), deadline=SYSTEM_CLOCK.monotonic() + 0.3)
    assert [type(f) for f in outcome.frames] == [InitFrame, OutputFrame]
    assert isinstance(outcome.error, RunnerNoResponseError)
    assert outcome.error.detail == "the caller's deadline passed before done"


def test_pings_keep_a_started_runner_alive() -> None:
    """Pings count for idle: a run longer than idle_timeout_s with pings in between succeeds."""
    with DevRunner(keepalive_s=0.2) as server:
        outcome = run(server.delay_url(1000))  # 1 s > idle 0.7 s; the dev runner pings meanwhile
    assert outcome.error is None
    assert isinstance(outcome.frames[-1], DoneFrame)


def test_blocked_without_allow_private(runner: DevRunner) -> None:
    with RunnerClient(LIMITS) as client:
        closed = StartTarget(
            url=runner.url,
            headers={},
            pool=PoolKey(namespace="ns", runner_name="dev"),
            total_slots=1,
            request_lifespan=60,
        )
        before = runner.start_requests
        result = probe(client, closed)
    assert result.error == ServerlessConnectionError(
        message="127.0.0.1 is a loopback address (the runner config does not allow private "
        "networks)",
        reason="blocked_address",
    )
    assert runner.start_requests == before


def test_localhost_name_is_resolved_pinned_and_keeps_host(runner: DevRunner) -> None:
    outcome = run(runner.url.replace("127.0.0.1", "localhost"))
    assert outcome.error is None
    assert runner.received[-1].headers["Host"] == f"localhost:{runner.port}"


def test_probes_sync_and_async(runner: DevRunner) -> None:
    with RunnerClient(LIMITS) as client:
        ok = probe(client, target(runner.url))
        bad = probe(client, target(runner.fault_url("http_503")))

    async def main() -> Any:
        async with AsyncRunnerClient(LIMITS) as client:
            return await aprobe(client, target(runner.fault_url("pings_forever")))

    slow = asyncio.run(main())
    assert ok.ok and ok.runner_id and ok.runner_id.startswith("dev-") and ok.error is None
    assert not bad.ok and isinstance(bad.error, ServerlessHttpError)
    assert not slow.ok and isinstance(slow.error, ServerlessConnectionError)
    assert slow.error.reason == "timeout"
    headers = runner.received[-1].headers
    assert headers["x-runner-pool"] == "ns/dev"
    assert headers["x-runner-total-slots"] == "2"
    assert headers["x-runner-request-lifespan"] == "60"
    assert headers["Authorization"] == "Bearer dev-secret"
    assert runner.received[-1].body == {"protocol_version": 1, "probe": True}


def test_server_that_never_answers_times_out_before_init() -> None:
    """The kernel accepts the connection, nobody ever answers: time to init bounds the wait."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # never accept()ed: the request is sent, no response ever comes
        outcome = run(f"http://127.0.0.1:{listener.getsockname()[1]}")
    assert isinstance(outcome.error, RunnerError)
    assert outcome.error.error == ServerlessConnectionError(
        message="no init frame within 0.5 s", reason="timeout"
    )
