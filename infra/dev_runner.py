"""A dev runner endpoint: a real HTTP server on loopback that speaks protocol v1, or misbehaves.

Tests, ``runner-kit local`` and the demo point runner configs at it. Healthy ``POST .../start``:
``init`` (a fresh ``runner_id``), a ping, an ``output`` ``{"echo": input}``, then ``done`` with
output ``{"echo": input}`` and state ``{"count": previous count + 1, "last_input": input}``.
A probe body gets ``init`` then ``done`` with null output and state.

Paths (any prefix may come before ``/start``, so several pools can share one server):

- ``POST {url}/start``                healthy, or the global fault (``set_fault``)
- ``POST {url}/fault/<name>/start``   that fault, whatever the global switch says
- ``POST {url}/delay/<ms>/start``     healthy, with ``<ms>`` between ``init`` and ``done``
- ``POST {url}/_control/fault``       ``{"fault": name | null}`` sets the global switch
- ``GET  {url}/_control/fault``       the current global fault
- ``POST {url}/_control/script``      ``{"steps": [step, ...]}``: the next message starts (not
  probes) take one step each, in order; then the global fault again
- ``POST {url}/_control/random``      ``{"seed": N, "steps": [step, ...]}``: every message start
  takes a step drawn at random (seeded) until reset with ``{"steps": []}``
- ``GET  {url}/_control/script``      the steps left and the random choices

A *step* is a fault name, ``healthy``, or ``hold:<ms>`` (healthy, ``<ms>`` between ``init`` and
``done``). Scripts make a loopback endpoint that changes behaviour per request while messages flow.

Faults (``FAULTS``; ``http_<N>`` works for any status N): see ``_FAULT_DOCS``. Every hang is
bounded and ends early when the client goes away or the server stops, so ``stop()`` is quick.
"""

from __future__ import annotations

import base64
import json
import random
import re
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

_FAULT_DOCS: Final = {
    "http_500": "HTTP 500 with a short text body (http_<N>: any status N)",
    "http_503": "HTTP 503 with a short text body",
    "http_500_multibyte": "HTTP 500, non-ASCII body with a 3-byte character across byte 512",
    "wrong_content_type": "200 with text/html",
    "empty_body": "200 text/event-stream with an empty body",
    "cut_mid_chunk": "200, then the connection closes in the middle of a chunk, before init",
    "close_before_init": "200, a comment and a ping, then a clean end before init",
    "garbage_base64": "an event whose data is not base64",
    "base64_not_json": "valid base64 of text that is not JSON",
    "wrong_schema": "an init frame without runner_id",
    "wrong_version": "an init frame with v=2",
    "init_then_silence": "init, then nothing (bounded hang)",
    "init_then_close": "init, then a clean end without done",
    "slow_init": "200, then silence before init (bounded), then a normal run",
    "pings_forever": "200, then pings and never init (bounded)",
    "oversized_event": "one event larger than 1 MiB before init",
    "redirect_metadata": "302 to http://169.254.169.254/latest/meta-data/",
    "actor_error": "init, then an error frame (retryable false)",
    "actor_error_retryable": "init, then an error frame (retryable true)",
    "stopping": "init, an output, then event: stopping",
    "broken_done": "init, an output, then a done frame without state",
    "data_after_done": "a healthy run, then an output frame after done",
    "done_then_hold": "a healthy run that keeps the stream open after done (bounded hang)",
    "buffered": "a healthy run sent whole with a content-length, like a buffering host",
}
FAULTS: Final = tuple(_FAULT_DOCS)
"""Every named fault mode (``http_<N>`` accepts any status, two examples are listed)."""

_HTTP_FAULT = re.compile(r"http_([1-5][0-9][0-9])")
METADATA_REDIRECT: Final = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
EVENT_STREAM: Final = "text/event-stream"


def is_fault(name: str) -> bool:
    """True if ``name`` is a fault mode this server knows."""
    return name in _FAULT_DOCS or _HTTP_FAULT.fullmatch(name) is not None


def describe_fault(name: str) -> str:
    """One line about what fault ``name`` does."""
    if name in _FAULT_DOCS:
        return _FAULT_DOCS[name]
    match = _HTTP_FAULT.fullmatch(name)
    if match:
        return f"HTTP {match.group(1)} with a short text body"
    raise ValueError(f"unknown fault {name!r}")


def is_step(step: object) -> bool:
    """True if ``step`` is a script step: a fault name, ``healthy`` or ``hold:<ms>``."""
    if not isinstance(step, str):
        return False
    return step == "healthy" or _HOLD_STEP.fullmatch(step) is not None or is_fault(step)


_HOLD_STEP: Final = re.compile(r"hold:(\d{1,7})")


def frame_data(frame: dict[str, Any]) -> bytes:
    """A frame as an event's data: standard base64 of its UTF-8 JSON."""
    return base64.b64encode(json.dumps(frame, separators=(",", ":")).encode())


def message_event(frame: dict[str, Any]) -> bytes:
    """One complete ``message`` event carrying ``frame``."""
    return b"data: " + frame_data(frame) + b"\n\n"


PING: Final = b"event: ping\ndata:\n\n"
STOPPING: Final = b"event: stopping\ndata:\n\n"


@dataclass(frozen=True)
class ReceivedRequest:
    """What a ``/start`` request carried (for tests that check headers and bodies)."""

    path: str
    headers: dict[str, str]
    body: Any
    behaviour: str = "healthy"
    """The step or fault this request was answered with (``healthy``, ``hold:<ms>``, a fault)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # the default 5 drops bursts of concurrent connects

    def __init__(self, address: tuple[str, int], runner: DevRunner) -> None:
        self.runner = runner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up mid-stream on purpose; tracebacks would only be noise


class _ClientGone(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that stops reading cannot pin a thread forever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing --------------------------------------------------------------------------

    @property
    def runner(self) -> DevRunner:
        return self.server.runner

    def _read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _plain(
        self, status: int, text: str, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("connection", "close")
        self.end_headers()
        if body and status >= 200 and status not in (204, 304):
            self.wfile.write(body)
        self.close_connection = True

    def _json(self, status: int, value: Any) -> None:
        self._plain(status, json.dumps(value), "application/json")

    def _begin_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", EVENT_STREAM)
        self.send_header("cache-control", "no-store")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _hold(
        self, seconds: float, tick: Callable[[], None] | None = None, every: float = 0.05
    ) -> None:
        """Wait up to ``seconds``; raise ``_ClientGone`` early if the client hangs up."""
        end = time.monotonic() + seconds
        stop = self.runner._stopping
        while not stop.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            if self._client_gone():
                raise _ClientGone
            if tick is not None:
                tick()
            stop.wait(min(every, remaining))
        raise _ClientGone  # the server is stopping

    # --- routing ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.endswith("/_control/fault"):
            self._json(200, {"fault": self.runner.fault})
        elif path.endswith("/_control/script"):
            self._json(200, self.runner.script_status())
        elif path.endswith("/health"):
            self._json(200, {"ok": True})
        else:
            self._plain(404, "not found")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        raw = self._read_body()
        try:
            if path.endswith("/_control/fault"):
                self._control(raw)
            elif path.endswith("/_control/script") or path.endswith("/_control/random"):
                self._control_script(raw, randomly=path.endswith("/random"))
            elif path.endswith("/start"):
                self._start(path, raw)
            else:
                self._plain(404, "not found: POST {url}/start")
        except (_ClientGone, OSError):
            self.close_connection = True

    def _control(self, raw: bytes) -> None:
        try:
            fault = json.loads(raw or b"{}").get("fault")
            self.runner.set_fault(fault)
        except (ValueError, AttributeError, TypeError) as exc:
            self._json(400, {"error": str(exc), "faults": list(FAULTS)})
            return
        self._json(200, {"fault": self.runner.fault})

    def _control_script(self, raw: bytes, *, randomly: bool) -> None:
        try:
            body = json.loads(raw or b"{}")
            steps = body.get("steps", [])
            if randomly:
                self.runner.set_random(steps, seed=body.get("seed", 0))
            else:
                self.runner.set_script(steps)
        except (ValueError, AttributeError, TypeError) as exc:
            self._json(400, {"error": str(exc), "faults": list(FAULTS)})
            return
        self._json(200, self.runner.script_status())

    def _start(self, path: str, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.runner._record(ReceivedRequest(path, dict(self.headers.items()), body, "bad"))
            self._plain(400, "the /start body must be a JSON object")
            return
        step = None if body.get("probe") else self.runner._next_step()
        fault = self.runner.fault
        delay_ms = 0
        if step is not None:
            hold = _HOLD_STEP.fullmatch(step)
            fault = None if step == "healthy" or hold else step
            delay_ms = int(hold.group(1)) if hold else 0
        match = re.search(r"/fault/([^/]+)/start$", path)
        if match:
            fault = match.group(1)
            if not is_fault(fault):
                self._plain(404, f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
                return
        match = re.search(r"/delay/(\d{1,7})/start$", path)
        if match:
            delay_ms = int(match.group(1))
        behaviour = fault or (f"hold:{delay_ms}" if delay_ms else "healthy")
        self.runner._record(ReceivedRequest(path, dict(self.headers.items()), body, behaviour))
        self.runner._stream_opened()
        try:
            if fault is None:
                self._healthy(body, delay_ms / 1000)
            else:
                self._fault(fault, body)
        finally:
            self.runner._stream_closed()

    # --- behaviours ------------------------------------------------------------------------

    def _init(self) -> dict[str, Any]:
        return {"v": 1, "type": "init", "runner_id": f"dev-{uuid.uuid4().hex[:12]}"}

    def _healthy(self, body: dict[str, Any], delay_s: float = 0.0) -> None:
        self._begin_stream()
        self._chunk(message_event(self._init()))
        self._chunk(PING)
        if body.get("probe"):
            self._chunk(message_event({"type": "done", "output": None, "state": None}))
            self._end_stream()
            return
        value = body.get("input")
        state = body.get("state")
        count = state.get("count") if isinstance(state, dict) else None
        count = count if isinstance(count, int) and not isinstance(count, bool) else 0
        self._chunk(message_event({"type": "output", "data": {"echo": value}}))
        if delay_s > 0:  # a long run keeps its stream alive with pings
            keepalive = self.runner.keepalive_s
            self._hold(delay_s, tick=self._keepalive(keepalive), every=min(0.05, keepalive))
        done = {
            "type": "done",
            "output": {"echo": value},
            "state": {"count": count + 1, "last_input": value},
        }
        self._chunk(message_event(done))
        self._end_stream()

    def _keepalive(self, interval: float) -> Callable[[], None]:
        last = time.monotonic()

        def tick() -> None:
            nonlocal last
            if time.monotonic() - last >= interval:
                self._chunk(PING)
                last = time.monotonic()

        return tick

    def _fault(self, fault: str, body: dict[str, Any]) -> None:
        runner = self.runner
        match = _HTTP_FAULT.fullmatch(fault)
        if match:
            self._plain(int(match.group(1)), f"dev runner fault {fault}")
            return
        if fault == "http_500_multibyte":
            # 510 ASCII bytes, then "€" (3 bytes: 510..512) straddles the 512-byte cut.
            self._plain(500, "a" * 510 + "€" + " — ünïcödé tail " * 8)
        elif fault == "wrong_content_type":
            self._plain(200, "<html><body>not an event stream</body></html>", "text/html")
        elif fault == "empty_body":
            self.send_response(200)
            self.send_header("content-type", EVENT_STREAM)
            self.send_header("content-length", "0")
            self.send_header("connection", "close")
            self.end_headers()
            self.close_connection = True
        elif fault == "redirect_metadata":
            self.send_response(302)
            self.send_header("location", METADATA_REDIRECT)
            self.send_header("content-length", "0")
            self.send_header("connection", "close")
            self.end_headers()
            self.close_connection = True
        elif fault == "cut_mid_chunk":
            self._begin_stream()
            event = message_event(self._init())
            half = event[: len(event) // 2]
            self.wfile.write(b"%x\r\n%s" % (len(event), half))  # promise more than we send
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
        elif fault == "close_before_init":
            self._begin_stream()
            self._chunk(b": dev runner is closing before init\n\n")
            self._chunk(PING)
            self._end_stream()
        elif fault == "garbage_base64":
            self._stream_events(b"data: this is not base64!!\n\n")
        elif fault == "base64_not_json":
            self._stream_events(b"data: " + base64.b64encode(b"hello, not JSON") + b"\n\n")
        elif fault == "wrong_schema":
            self._stream_events(message_event({"v": 1, "type": "init"}))
        elif fault == "wrong_version":
            self._stream_events(message_event({"v": 2, "type": "init", "runner_id": "dev-v2"}))
        elif fault == "init_then_silence":
            self._begin_stream()
            self._chunk(message_event(self._init()))
            self._hold(runner.hang_s)
        elif fault == "init_then_close":
            self._stream_events(message_event(self._init()))
        elif fault == "slow_init":
            self._begin_stream()
            self._hold(runner.slow_init_s)
            self._chunk(message_event(self._init()))
            self._chunk(message_event({"type": "done", "output": None, "state": None}))
            self._end_stream()
        elif fault == "pings_forever":
            self._begin_stream()
            self._hold(runner.hang_s, tick=lambda: self._chunk(PING), every=runner.ping_interval_s)
        elif fault == "oversized_event":
            self._begin_stream()
            piece = b"A" * 65536
            self._chunk(b"data: ")
            for _ in range(runner.oversized_bytes // len(piece) + 1):
                self._chunk(piece)
            self._chunk(b"\n\n")
            self._end_stream()
        elif fault in ("actor_error", "actor_error_retryable"):
            retryable = fault == "actor_error_retryable"
            error = {
                "type": "error",
                "code": "actor_busy" if retryable else "actor_crashed",
                "message": "dev runner: the actor raised on purpose",
                "retryable": retryable,
            }
            self._stream_events(message_event(self._init()), message_event(error))
        elif fault == "stopping":
            output = {"type": "output", "data": {"echo": body.get("input")}}
            self._stream_events(message_event(self._init()), message_event(output), STOPPING)
        elif fault in ("broken_done", "data_after_done", "done_then_hold", "buffered"):
            self._after_done(fault, body)
        else:  # pragma: no cover - is_fault() guards every entry point
            self._plain(500, f"dev runner: fault {fault!r} has no behaviour")

    def _after_done(self, fault: str, body: dict[str, Any]) -> None:
        """Faults of the final frame and of what follows it (``runner-kit check`` finds them)."""
        output = {"echo": body.get("input")}
        done: dict[str, Any] = {"type": "done", "output": output, "state": {"count": 1}}
        if fault == "broken_done":
            del done["state"]
        events = [self._init(), {"type": "output", "data": output}, done]
        if fault == "data_after_done":
            events.append({"type": "output", "data": "after done"})
        if fault == "buffered":
            whole = b"".join(message_event(frame) for frame in events)
            self._plain(200, whole.decode(), EVENT_STREAM)  # one write, with a content-length
            return
        self._begin_stream()
        for frame in events:
            self._chunk(message_event(frame))
        if fault == "done_then_hold":
            self._hold(self.runner.hang_s)
        self._end_stream()

    def _stream_events(self, *events: bytes) -> None:
        self._begin_stream()
        for event in events:
            self._chunk(event)
        self._end_stream()


class DevRunner:
    """The dev runner server; ``with DevRunner() as runner: ... runner.url``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hang_s: float = 30.0,
        slow_init_s: float = 10.0,
        ping_interval_s: float = 0.05,
        keepalive_s: float = 0.5,
        oversized_bytes: int = 1024 * 1024 + 65536,
    ) -> None:
        self.host = host
        self.port = port
        self.hang_s = hang_s
        self.slow_init_s = slow_init_s
        self.ping_interval_s = ping_interval_s
        self.keepalive_s = keepalive_s
        self.oversized_bytes = oversized_bytes
        self._lock = threading.Lock()
        self._fault: str | None = None
        self._script: deque[str] = deque()
        self._random_steps: tuple[str, ...] = ()
        self._random = random.Random(0)
        self._start_requests = 0
        self._active = 0
        self._peak = 0
        self._received: deque[ReceivedRequest] = deque(maxlen=200)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> DevRunner:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"dev-runner:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging streams end within a poll interval."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DevRunner:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # addresses

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash (a runner config's ``url``)."""
        if self._server is None:
            raise RuntimeError("the dev runner is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def fault_url(self, name: str) -> str:
        """A runner URL whose ``/start`` always has fault ``name``."""
        if not is_fault(name):
            raise ValueError(f"unknown fault {name!r}")
        return f"{self.url}/fault/{name}"

    def delay_url(self, ms: int) -> str:
        """A runner URL whose healthy runs take ``ms`` between ``init`` and ``done``."""
        return f"{self.url}/delay/{int(ms)}"

    # state

    @property
    def fault(self) -> str | None:
        """The global fault applied to ``/start`` requests without their own."""
        with self._lock:
            return self._fault

    def set_fault(self, name: str | None) -> None:
        """Switch the global fault (None: healthy)."""
        if name is not None and not (isinstance(name, str) and is_fault(name)):
            raise ValueError(f"unknown fault {name!r}")
        with self._lock:
            self._fault = name

    def set_script(self, steps: list[str]) -> None:
        """The next message starts (not probes) take one step each; then the global fault."""
        checked = _checked_steps(steps)
        with self._lock:
            self._script = deque(checked)

    def set_random(self, steps: list[str], *, seed: int = 0) -> None:
        """Every message start takes a seeded random step from ``steps`` (empty: off)."""
        checked = _checked_steps(steps)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError("seed must be an integer")
        with self._lock:
            self._random_steps = tuple(checked)
            self._random = random.Random(seed)

    def script_status(self) -> dict[str, Any]:
        """The script's remaining steps and the random choices."""
        with self._lock:
            return {"steps": list(self._script), "random": list(self._random_steps)}

    def _next_step(self) -> str | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self._random_steps:
                return self._random.choice(self._random_steps)
            return None

    @property
    def start_requests(self) -> int:
        """How many ``/start`` requests arrived (faulty ones included)."""
        with self._lock:
            return self._start_requests

    @property
    def received(self) -> list[ReceivedRequest]:
        """The most recent ``/start`` requests (up to 200), oldest first."""
        with self._lock:
            return list(self._received)

    @property
    def active_streams(self) -> int:
        """``/start`` requests being answered right now."""
        with self._lock:
            return self._active

    @property
    def peak_streams(self) -> int:
        """The most ``/start`` requests answered at the same time so far."""
        with self._lock:
            return self._peak

    def _stream_opened(self) -> None:
        with self._lock:
            self._active += 1
            self._peak = max(self._peak, self._active)

    def _stream_closed(self) -> None:
        with self._lock:
            self._active -= 1

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._start_requests += 1
            self._received.append(request)


def _checked_steps(steps: object) -> list[str]:
    if not isinstance(steps, list) or not all(is_step(step) for step in steps):
        raise ValueError(f"steps must be a list of faults, 'healthy' or 'hold:<ms>': {steps!r}")
    return list(steps)


def main() -> None:  # pragma: no cover - manual use: python -m infra.dev_runner
    """Serve on 127.0.0.1:8081 until interrupted."""
    with DevRunner(port=8081) as runner:
        print(f"dev runner on {runner.url}; faults: {', '.join(FAULTS)}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
