"""The endpoint SDK on real loopback servers, read by the kit's own SSE client.

Hosts: the stdlib server (``Endpoint.server()``) and the ASGI app under a real uvicorn. The
SIGTERM tests run the endpoint as its own process (the stdlib server, and uvicorn).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.runner.attempt import StartLimits
from adapters.runner.client import AsyncRunnerClient, RunnerClient, probe
from adapters.runner.transport import StartTarget
from core import protocol
from core.errors import ServerlessHttpError
from core.exceptions import RunnerError
from core.models import PoolKey
from infra.cli import main as cli
from infra.serving import free_port
from runner_kit_endpoint import ActorError, Context, Endpoint, Result
from tests.helpers.sdk import EXAMPLE, load_example, stdlib_host

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SLOW = ROOT / "tests" / "fixtures" / "slow_endpoint.py"
LIMITS = StartLimits(connect_timeout_s=2.0, init_timeout_s=5.0, idle_timeout_s=10.0)
BODY = protocol.start_body("actor-1", "msg-1", {"count": 4}, {"hello": "world"})


# --- hosts ---------------------------------------------------------------------------------


@contextmanager
def uvicorn_host(endpoint: Endpoint) -> Iterator[str]:
    import uvicorn

    config = uvicorn.Config(
        endpoint,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        http="h11",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < end, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        endpoint.stop()  # open streams end with stopping, so uvicorn's shutdown does not wait
        server.should_exit = True
        thread.join(timeout=10)


HOSTS = [pytest.param(stdlib_host, id="stdlib"), pytest.param(uvicorn_host, id="uvicorn")]
Host = Callable[[Endpoint], Any]


def target(url: str, lifespan: int = 60) -> StartTarget:
    return StartTarget(
        url=url,
        headers={"authorization": "Bearer sdk-secret"},
        pool=PoolKey(namespace="sdk", runner_name="test"),
        total_slots=3,
        request_lifespan=lifespan,
        allow_private_network=True,
    )


def run_kit(url: str, body: dict[str, Any] = BODY, lifespan: int = 60) -> list[protocol.Frame]:
    with RunnerClient(LIMITS) as client, client.start(target(url, lifespan), body) as frames:
        return list(frames)


# --- runs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_the_example_through_the_kit_client(host: Host) -> None:
    with host(load_example().app) as url:
        frames = run_kit(url)
    init, output, done = frames
    assert isinstance(init, protocol.InitFrame) and init.runner_id.startswith("py-")
    assert output == protocol.OutputFrame(data={"received": {"hello": "world"}})
    assert done == protocol.DoneFrame(
        output={"echo": {"hello": "world"}, "count": 5}, state={"count": 5}
    )


def test_the_sdk_example_in_the_protocol_doc_runs() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text[text.index("## The endpoint SDK (Python)") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "docs/protocol.md lost its SDK example"
    namespace: dict[str, Any] = {"__name__": "doc_sdk_example"}
    exec(compile(match.group(1), "docs/protocol.md", "exec"), namespace)
    with stdlib_host(namespace["app"]) as url:
        frames = run_kit(url)
        refused = run_kit(url, protocol.start_body("a", "m", None, None))
    assert frames[1:] == [
        protocol.OutputFrame(data={"received": {"hello": "world"}}),
        protocol.DoneFrame(output={"echo": {"hello": "world"}}, state={"count": 5}),
    ]
    assert refused[-1] == protocol.ErrorFrame(
        code="no_input", message="send an input", retryable=False
    )


def test_the_example_counts_from_a_new_actor() -> None:
    with stdlib_host(load_example().app) as url:
        frames = run_kit(url, protocol.start_body("a", "m", None, "hi"))
    assert frames[-1] == protocol.DoneFrame(output={"echo": "hi", "count": 1}, state={"count": 1})


async def _async_actor(state: Any, input: Any, ctx: Context) -> tuple[Any, Any]:
    await asyncio.sleep(0)
    ctx.emit({"step": 1})
    await asyncio.sleep(0)
    ctx.emit({"step": 2})
    return {"sum": input["a"] + input["b"]}, {"seen": ctx.message_id, "pool": ctx.pool}


@pytest.mark.parametrize("host", HOSTS)
def test_an_async_function_with_outputs(host: Host) -> None:
    with host(Endpoint(_async_actor)) as url:
        frames = run_kit(url, protocol.start_body("a", "m-9", None, {"a": 2, "b": 3}))
    assert frames[1:] == [
        protocol.OutputFrame(data={"step": 1}),
        protocol.OutputFrame(data={"step": 2}),
        protocol.DoneFrame(output={"sum": 5}, state={"seen": "m-9", "pool": "sdk/test"}),
    ]


def test_the_async_kit_client_against_uvicorn() -> None:
    async def read(url: str) -> list[protocol.Frame]:
        async with AsyncRunnerClient(LIMITS) as client:
            async with client.start(target(url), BODY) as frames:
                return [frame async for frame in frames]

    with uvicorn_host(Endpoint(_async_actor)) as url:
        frames = asyncio.run(read(url))
    assert [type(f) for f in frames] == [
        protocol.InitFrame,
        protocol.OutputFrame,
        protocol.OutputFrame,
        protocol.ErrorFrame,
    ]
    last = frames[-1]
    assert isinstance(last, protocol.ErrorFrame) and last.code == "unhandled_exception"
    assert last.message == "KeyError: 'a'"  # BODY's input has no "a": the author's bug, typed


def _raise_actor_error(state: Any, input: Any) -> Any:
    raise ActorError("quota_exceeded", "try again in a minute", retryable=True)


async def _raise_async(state: Any, input: Any) -> Any:
    raise ActorError("bad_input", "no")


def _raise_value_error(state: Any, input: Any) -> Any:
    raise ValueError("nope")


def _return_int(state: Any, input: Any) -> Any:
    return 42


def _return_not_json(state: Any, input: Any) -> Any:
    return Result(output={1, 2}, state=None)


# Each failure, by id: the actor function, and the error frame's code, message and retryable.
FAILURES = {
    "actor_error": (_raise_actor_error, "quota_exceeded", "try again in a minute", True),
    "async": (_raise_async, "bad_input", "no", False),
    "unhandled": (_raise_value_error, "unhandled_exception", "ValueError: nope", False),
    "not_a_result": (
        _return_int,
        "invalid_result",
        "an actor function returns Result(output, state) or a tuple (output, state), not int",
        False,
    ),
}


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(
    ("fn", "code", "message", "retryable"), list(FAILURES.values()), ids=list(FAILURES)
)
def test_failures_are_typed_error_frames(
    host: Host, fn: Any, code: str, message: str, retryable: bool
) -> None:
    expected = protocol.ErrorFrame(code=code, message=message, retryable=retryable)
    with host(Endpoint(fn)) as url:
        frames = run_kit(url)
    assert [type(f) for f in frames] == [protocol.InitFrame, protocol.ErrorFrame]
    assert frames[-1] == expected


def test_a_result_that_is_not_json_is_invalid_result() -> None:
    with stdlib_host(Endpoint(_return_not_json)) as url:
        last = run_kit(url)[-1]
    assert isinstance(last, protocol.ErrorFrame) and last.code == "invalid_result"
    assert "not JSON" in last.message


def test_actor_error_code_is_checked() -> None:
    with pytest.raises(ValueError, match="1-256"):
        ActorError("")
    with pytest.raises(ValueError, match="1-256"):
        ActorError("x" * 257)


# --- raw stream: probes, pings, bad requests -----------------------------------------------


def raw_events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event type, data) of an SSE body, in order."""
    name, data = "message", ""
    for line in response.iter_lines():
        if not line:
            yield name, data
            name, data = "message", ""
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


def start(url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return httpx.stream("POST", f"{url}/start", json=body, headers=headers or {}, timeout=10)


@pytest.mark.parametrize("host", HOSTS)
def test_a_probe_gets_init_and_the_end(host: Host) -> None:
    calls: list[Any] = []
    endpoint = Endpoint(lambda state, input: calls.append(input) or (None, None))
    with host(endpoint) as url:
        with RunnerClient(LIMITS) as client:
            result = probe(client, target(url))
        with start(url, {"protocol_version": 1, "probe": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            events = list(raw_events(response))
    assert result.ok and result.error is None
    assert len(events) == 1 and events[0][0] == "message"
    assert isinstance(protocol.decode_frame(events[0][1]), protocol.InitFrame)
    assert calls == []  # a probe never runs the actor function


@pytest.mark.parametrize("host", HOSTS)
def test_pings_while_the_function_runs(host: Host) -> None:
    release = threading.Event()

    def wait_for_release(state: Any, input: Any) -> Any:
        assert release.wait(10)
        return "released", state

    with host(Endpoint(wait_for_release, ping_interval_s=0.05)) as url:
        with start(url, BODY) as response:
            kinds: list[str] = []
            for name, data in raw_events(response):
                kinds.append(name if name != "message" else protocol.decode_frame(data).type)
                if name == "ping":
                    release.set()  # the function finishes only after a ping was seen
    assert kinds[0] == "init" and kinds[-1] == "done"
    assert "ping" in kinds[1:-1]


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        pytest.param("GET", "/nope", None, 404, "not_found", id="unknown_path"),
        pytest.param("GET", "/start", None, 405, "method_not_allowed", id="get_start"),
        pytest.param("POST", "/start", b"{not json", 400, "invalid_body", id="not_json"),
        pytest.param("POST", "/start", b"[1]", 400, "invalid_body", id="not_object"),
        pytest.param("POST", "/start", b"NaN", 400, "invalid_body", id="nan"),
        pytest.param(
            "POST",
            "/start",
            b'{"protocol_version": 2, "probe": true}',
            400,
            "unsupported_protocol_version",
            id="version_2",
        ),
    ],
)
def test_bad_requests_get_a_json_4xx(
    host: Host, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    with host(Endpoint(_return_int)) as url:
        response = httpx.request(method, url + path, content=body, timeout=10)
        health = httpx.get(url + "/health", timeout=10)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert health.status_code == 200 and health.json()["protocol_version"] == 1


def test_any_prefix_before_start() -> None:
    with stdlib_host(load_example().app) as url:
        frames = run_kit(url + "/fn/v1/")
    assert isinstance(frames[-1], protocol.DoneFrame)


# --- deadline, stop, hang-up -----------------------------------------------------------------


class LongRun:
    """What a long function does: run until the endpoint cancels it; ``started`` and
    ``cancelled`` are set on the way, and ``ends(state)`` is what it returns then."""

    def __init__(self, ends: Callable[[Any], Any] = lambda state: (None, None)) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.ends = ends

    def actor(self, state: Any, input: Any, ctx: Context) -> Any:
        self.started.set()
        while not ctx.cancelled:
            time.sleep(0.01)
        self.cancelled.set()
        return self.ends(state)


@pytest.mark.parametrize("host", HOSTS)
def test_the_lifespan_gives_the_function_a_deadline(host: Host) -> None:
    def report(state: Any, input: Any, ctx: Context) -> Any:
        return {"remaining": ctx.remaining(), "has_deadline": ctx.deadline is not None}, None

    with host(Endpoint(report)) as url:
        done = run_kit(url, lifespan=60)[-1]
        no_lifespan = httpx.post(f"{url}/start", json=BODY, timeout=10).text
    assert isinstance(done, protocol.DoneFrame) and isinstance(done.output, dict)
    assert done.output["has_deadline"] is True
    remaining = done.output["remaining"]
    assert isinstance(remaining, float) and 50.0 < remaining <= 59.0  # 60 s minus the margin
    frames = [
        protocol.decode_frame(line[6:]) for line in no_lifespan.splitlines() if line[:6] == "data: "
    ]
    last = frames[-1]
    assert isinstance(last, protocol.DoneFrame) and last.output == {
        "remaining": None,
        "has_deadline": False,
    }


@pytest.mark.parametrize("host", HOSTS)
def test_past_the_deadline_the_run_ends_with_a_retryable_error(host: Host) -> None:
    too_slow = LongRun(lambda state: ("late", state))
    with host(Endpoint(too_slow.actor, ping_interval_s=0.2)) as url:
        frames = run_kit(url, lifespan=1)
        assert too_slow.cancelled.wait(10)
    assert [type(f) for f in frames] == [protocol.InitFrame, protocol.ErrorFrame]
    last = frames[-1]
    assert isinstance(last, protocol.ErrorFrame)
    assert (last.code, last.retryable) == ("deadline_exceeded", True)
    assert "request lifespan (1 s)" in last.message


@pytest.mark.parametrize("host", HOSTS)
def test_stop_ends_open_streams_with_stopping_and_refuses_new_ones(host: Host) -> None:
    slow = LongRun()
    endpoint = Endpoint(slow.actor)
    with host(endpoint) as url:
        with RunnerClient(LIMITS) as client, client.start(target(url), BODY) as stream:
            frames = [next(stream)]
            assert slow.started.wait(10)
            endpoint.stop()
            frames.extend(stream)
        with pytest.raises(RunnerError) as refused:
            run_kit(url)
    assert [type(f) for f in frames] == [protocol.InitFrame, protocol.StoppingFrame]
    assert isinstance(refused.value.error, ServerlessHttpError)
    assert refused.value.error.status_code == 503


@pytest.mark.parametrize("host", HOSTS)
def test_a_client_that_hangs_up_cancels_the_run(host: Host) -> None:
    slow = LongRun()
    with host(Endpoint(slow.actor, ping_interval_s=0.05)) as url:
        with RunnerClient(LIMITS) as client, client.start(target(url), BODY) as stream:
            assert isinstance(next(stream), protocol.InitFrame)
        assert slow.cancelled.wait(10)


# --- SIGTERM, in a process of its own -------------------------------------------------------


@contextmanager
def process(args: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        end = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < end, "the endpoint process did not listen"
                time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


SERVERS = [
    pytest.param(lambda port: [sys.executable, str(SLOW), "--port", str(port)], id="stdlib"),
    pytest.param(
        lambda port: [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.fixtures.slow_endpoint:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        id="uvicorn",
    ),
]


@pytest.mark.parametrize("command", SERVERS)
def test_sigterm_ends_open_streams_with_stopping(command: Callable[[int], list[str]]) -> None:
    port = free_port()
    with process(command(port), port) as proc:
        url = f"http://127.0.0.1:{port}"
        with RunnerClient(LIMITS) as client, client.start(target(url), BODY) as stream:
            frames = [next(stream), next(stream)]  # init, then the actor's first output
            proc.send_signal(signal.SIGTERM)
            frames.extend(stream)
        code = proc.wait(timeout=15)
    assert [type(f) for f in frames] == [
        protocol.InitFrame,
        protocol.OutputFrame,
        protocol.StoppingFrame,
    ]
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down


# --- runner-kit check against the SDK --------------------------------------------------------


def test_check_passes_on_the_example_process(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    with process([sys.executable, str(EXAMPLE), "--port", str(port)], port):
        code = cli(["check", f"http://127.0.0.1:{port}", "--allow-private", "--json"])
    answer = json.loads(capsys.readouterr().out)
    assert code == 0, answer
    assert answer["conformant"] is True
    assert {rule["status"] for rule in answer["rules"]} == {"pass"}
    assert answer["warnings"] == []
    assert answer["execution"]["final"] == {
        "type": "done",
        "output": {"echo": {"hello": "from runner-kit check"}, "count": 42},
        "state": {"count": 42},
    }


@pytest.mark.parametrize("host", HOSTS)
def test_check_passes_on_sdk_endpoints(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    with host(Endpoint(_raise_actor_error)) as url:
        code = cli(["check", url, "--allow-private"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "error frame 'quota_exceeded' (retryable true): conformant" in out
    assert out.rstrip().endswith("conformant: protocol v1")
