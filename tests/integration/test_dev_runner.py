"""The dev runner itself: protocol v1 on the wire, switches, counters, concurrency, stop."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.runner.attempt import StartLimits
from adapters.runner.client import AsyncRunnerClient, RunnerClient, probe
from adapters.runner.transport import StartTarget
from core.errors import ServerlessHttpError
from core.exceptions import RunnerError, RunnerNoResponseError
from core.models import PoolKey
from core.protocol import DoneFrame, Frame, InitFrame, start_body
from infra.dev_faults import FAULTS, describe_fault, is_fault
from infra.dev_runner import DevRunner

pytestmark = pytest.mark.integration


@pytest.fixture
def runner() -> Iterator[DevRunner]:
    with DevRunner() as server:
        yield server


def target(url: str) -> StartTarget:
    return StartTarget(
        url=url,
        headers={},
        pool=PoolKey(namespace="ns", runner_name="dev"),
        total_slots=1,
        request_lifespan=60,
        allow_private_network=True,
    )


def control(method: str, url: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url, timeout=5, trust_env=False, **kwargs)


def raw_events(url: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """The events as a plain client sees them: (event type, decoded JSON or raw data)."""
    events: list[tuple[str, Any]] = []
    with httpx.stream("POST", f"{url}/start", json=body, timeout=5, trust_env=False) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        text = response.read().decode()
    for block in text.split("\n\n"):
        if not block:
            continue
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, text = line.partition(":")
            fields[name] = text.removeprefix(" ")
        kind = fields.get("event", "message")
        data = fields.get("data", "")
        value: Any = data
        if kind == "message":
            value = json.loads(base64.b64decode(data, validate=True))
        events.append((kind, value))
    return events


def test_healthy_wire_format(runner: DevRunner) -> None:
    events = raw_events(runner.url, start_body("a", "m", {"count": 41, "x": 1}, [1, 2]))
    kinds = [kind for kind, _ in events]
    assert kinds == ["message", "ping", "message", "message"]
    init, _, output, done = (value for _, value in events)
    assert init["v"] == 1 and init["type"] == "init" and init["runner_id"].startswith("dev-")
    assert output == {"type": "output", "data": {"echo": [1, 2]}}
    assert done == {
        "type": "done",
        "output": {"echo": [1, 2]},
        "state": {"count": 42, "last_input": [1, 2]},
    }


@pytest.mark.parametrize(
    ("state", "count"),
    [
        pytest.param(None, 1, id="no_state"),
        pytest.param({"count": "x"}, 1, id="bad_count"),
        pytest.param({"count": True}, 1, id="bool_count"),
        pytest.param([1], 1, id="list_state"),
        pytest.param({"count": 9}, 10, id="count"),
    ],
)
def test_state_count(runner: DevRunner, state: Any, count: int) -> None:
    *_, (_, done) = raw_events(runner.url, start_body("a", "m", state, "in"))
    assert done["state"] == {"count": count, "last_input": "in"}


def test_probe_body_gets_init_then_null_done(runner: DevRunner) -> None:
    events = raw_events(runner.url, {"protocol_version": 1, "probe": True})
    assert [value["type"] for kind, value in events if kind == "message"] == ["init", "done"]
    assert events[-1][1] == {"type": "done", "output": None, "state": None}


def test_runner_ids_are_unique_and_requests_counted(runner: DevRunner) -> None:
    with RunnerClient() as client:
        ids = {probe(client, target(runner.url)).runner_id for _ in range(5)}
        probe(client, target(runner.fault_url("http_500")))
    assert len(ids) == 5
    assert runner.start_requests == 6
    assert [r.path for r in runner.received][-1] == "/fault/http_500/start"


def test_global_fault_switch_and_control_endpoint(runner: DevRunner) -> None:
    with RunnerClient() as client:
        runner.set_fault("http_503")
        result = probe(client, target(runner.url))
        assert result.error == ServerlessHttpError(
            status_code=503, body="dev runner fault http_503"
        )
        # Per-URL faults win over the global switch; other prefixes still see the global one.
        assert probe(client, target(runner.fault_url("http_500"))).error == ServerlessHttpError(
            status_code=500, body="dev runner fault http_500"
        )
        assert not probe(client, target(f"{runner.url}/pool-b")).ok
        fault_url = f"{runner.url}/_control/fault"
        assert control("POST", fault_url, json={"fault": None}).json() == {"fault": None}
        assert runner.fault is None
        assert probe(client, target(runner.url)).ok
        assert control("POST", fault_url, json={"fault": "http_429"}).status_code == 200
        assert control("GET", fault_url).json() == {"fault": "http_429"}
    assert control("POST", f"{runner.url}/_control/fault", json={"fault": "x"}).status_code == 400
    assert runner.fault == "http_429"


def test_unknown_faults_are_refused(runner: DevRunner) -> None:
    with pytest.raises(ValueError):
        runner.set_fault("nope")
    with pytest.raises(ValueError):
        runner.fault_url("http_99")
    assert control("POST", f"{runner.url}/fault/nope/start", json={}).status_code == 404
    assert all(is_fault(name) and describe_fault(name) for name in FAULTS)
    assert is_fault("http_418") and not is_fault("http_5000")


def test_ten_concurrent_delayed_runs(runner: DevRunner) -> None:
    """The actor-host benchmark shape: 10 executions of a delayed run at the same time."""

    async def main() -> list[list[Frame]]:
        async with AsyncRunnerClient(StartLimits(init_timeout_s=5)) as client:

            async def one(i: int) -> list[Frame]:
                body = start_body(f"a{i}", "m", None, i)
                async with client.start(target(runner.delay_url(1000)), body) as frames:
                    return [frame async for frame in frames]

            return await asyncio.gather(*(one(i) for i in range(10)))

    results = asyncio.run(main())
    assert [r[-1] for r in results] == [
        DoneFrame(output={"echo": i}, state={"count": 1, "last_input": i}) for i in range(10)
    ]
    assert runner.peak_streams == 10
    # The server thread finishes its bookkeeping just after the client has read `done`.
    deadline = time.monotonic() + 5
    while runner.active_streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.active_streams == 0


def test_stop_with_hanging_streams_ends_them() -> None:
    server = DevRunner(hang_s=60).start()
    outcomes: list[BaseException | None] = []
    started = threading.Event()

    def hang(url: str) -> None:
        with RunnerClient(StartLimits(init_timeout_s=60, idle_timeout_s=60)) as client:
            try:
                with client.start(target(url), {}) as frames:
                    for frame in frames:
                        if isinstance(frame, InitFrame):
                            started.set()
            except (RunnerError, RunnerNoResponseError) as exc:
                outcomes.append(exc)

    threads = [
        threading.Thread(target=hang, args=(server.fault_url(f),), daemon=True)
        for f in ("init_then_silence", "pings_forever", "slow_init")
    ]
    for t in threads:
        t.start()
    assert started.wait(10)
    while server.active_streams < 3:
        threading.Event().wait(0.01)
    server.stop()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 3
    server.stop()  # idempotent


def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with DevRunner(host="::1") as server, RunnerClient() as client:
        assert server.url.startswith("http://[::1]:")
        assert probe(client, target(server.url)).ok


def test_url_needs_a_started_server() -> None:
    with pytest.raises(RuntimeError):
        _ = DevRunner().url


def _start_kind(url: str, body: dict[str, Any]) -> str:
    """``ok`` for a full healthy run, else the HTTP status or the last frame type."""
    with httpx.stream("POST", f"{url}/start", json=body, timeout=5, trust_env=False) as response:
        if response.status_code != 200:
            return str(response.status_code)
        text = response.read().decode()
    frames = [
        json.loads(base64.b64decode(line.removeprefix("data: ")))
        for line in text.split("\n")
        if line.startswith("data: ") and line != "data: "
    ]
    return "ok" if frames and frames[-1]["type"] == "done" else frames[-1]["type"]


def test_script_takes_one_step_per_message_start_and_skips_probes(runner: DevRunner) -> None:
    control(
        "POST",
        f"{runner.url}/_control/script",
        json={"steps": ["http_503", "hold:50", "actor_error", "healthy"]},
    ).raise_for_status()
    message = {"protocol_version": 1, "actor_id": "a", "message_id": "m", "input": 1}
    assert _start_kind(runner.url, {"protocol_version": 1, "probe": True}) == "ok"
    kinds = [_start_kind(runner.url, message) for _ in range(4)]
    assert kinds == ["503", "ok", "error", "ok"]
    runner.set_fault("http_500")  # the script is used up: the global fault applies again
    assert _start_kind(runner.url, message) == "500"
    behaviours = [request.behaviour for request in runner.received]
    assert behaviours == ["healthy", "http_503", "hold:50", "actor_error", "healthy", "http_500"]
    assert control("GET", f"{runner.url}/_control/script").json() == {"steps": [], "random": []}


def test_random_steps_are_seeded_and_reset(runner: DevRunner) -> None:
    message = {"protocol_version": 1, "actor_id": "a", "message_id": "m", "input": 1}
    draws = []
    for _ in range(2):
        control(
            "POST",
            f"{runner.url}/_control/random",
            json={"seed": 7, "steps": ["http_503", "healthy"]},
        ).raise_for_status()
        draws.append([_start_kind(runner.url, message) for _ in range(8)])
    assert draws[0] == draws[1]
    assert set(draws[0]) == {"503", "ok"}
    control("POST", f"{runner.url}/_control/random", json={"steps": []}).raise_for_status()
    assert [_start_kind(runner.url, message) for _ in range(3)] == ["ok"] * 3


@pytest.mark.parametrize("steps", [["nope"], "http_503", [1], ["hold:x"]])
def test_bad_script_is_refused(runner: DevRunner, steps: Any) -> None:
    answer = control("POST", f"{runner.url}/_control/script", json={"steps": steps})
    assert answer.status_code == 400
    with pytest.raises(ValueError, match="steps"):
        runner.set_script(steps)
