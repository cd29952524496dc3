"""The dev runner's fault catalogue and how each fault (or a healthy run) answers ``/start``.

``FAULTS`` names every mode (``http_<N>`` works for any status N); ``FaultStream`` is the request
handler half that writes the SSE stream of each, ``infra.dev_runner`` the server that routes
requests to it. Every hang is bounded and ends early when the client goes away or the server
stops, so stopping is quick.
"""

from __future__ import annotations

import base64
import json
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Final

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
    return step == "healthy" or HOLD_STEP.fullmatch(step) is not None or is_fault(step)


HOLD_STEP: Final = re.compile(r"hold:(\d{1,7})")


def frame_data(frame: dict[str, Any]) -> bytes:
    """A frame as an event's data: standard base64 of its UTF-8 JSON."""
    return base64.b64encode(json.dumps(frame, separators=(",", ":")).encode())


def message_event(frame: dict[str, Any]) -> bytes:
    """One complete ``message`` event carrying ``frame``."""
    return b"data: " + frame_data(frame) + b"\n\n"


PING: Final = b"event: ping\ndata:\n\n"
STOPPING: Final = b"event: stopping\ndata:\n\n"


def checked_steps(steps: object) -> list[str]:
    """``steps`` if it is a list of script steps, else ``ValueError``."""
    if not isinstance(steps, list) or not all(is_step(step) for step in steps):
        raise ValueError(f"steps must be a list of faults, 'healthy' or 'hold:<ms>': {steps!r}")
    return list(steps)


@dataclass(frozen=True)
class FaultTimings:
    """How long the slow faults take (bounded hangs, pings, the oversized event)."""

    hang_s: float = 30.0
    """How long a fault that hangs (``init_then_silence``, ``pings_forever``, ...) holds on."""
    slow_init_s: float = 10.0
    """How long ``slow_init`` waits before its ``init`` frame."""
    ping_interval_s: float = 0.05
    """The gap between the pings of ``pings_forever``."""
    keepalive_s: float = 0.5
    """The gap between the pings of a healthy run that is delayed (``/delay/<ms>``)."""
    oversized_bytes: int = 1024 * 1024 + 65536
    """The size of the data of ``oversized_event`` (1 MiB and 64 KiB by default)."""


class ClientGone(Exception):
    """The client hung up (or the server is stopping) while a stream was held open."""


class FaultStream(BaseHTTPRequestHandler):
    """Writes plain answers and SSE streams: healthy runs and every fault of ``FAULTS``."""

    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that stops reading cannot pin a thread forever

    # The server half sets these two in ``setup()``, before the request is handled.
    timings: FaultTimings
    """The server's timings."""
    stopping: threading.Event
    """Set when the server stops: every hang ends."""

    # --- plumbing --------------------------------------------------------------------------

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

    def _empty(self, status: int, header: str, value: str) -> None:
        """An answer without a body, with one header of its own; the connection closes."""
        self.send_response(status)
        self.send_header(header, value)
        self.send_header("content-length", "0")
        self.send_header("connection", "close")
        self.end_headers()
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
        stop = self.stopping
        while not stop.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            if self._client_gone():
                raise ClientGone
            if tick is not None:
                tick()
            stop.wait(min(every, remaining))
        raise ClientGone  # the server is stopping

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
            keepalive = self.timings.keepalive_s
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
        timings = self.timings
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
            self._empty(200, "content-type", EVENT_STREAM)
        elif fault == "redirect_metadata":
            self._empty(302, "location", METADATA_REDIRECT)
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
            self._hold(timings.hang_s)
        elif fault == "init_then_close":
            self._stream_events(message_event(self._init()))
        elif fault == "slow_init":
            self._begin_stream()
            self._hold(timings.slow_init_s)
            self._chunk(message_event(self._init()))
            self._chunk(message_event({"type": "done", "output": None, "state": None}))
            self._end_stream()
        elif fault == "pings_forever":
            self._begin_stream()
            self._hold(
                timings.hang_s, tick=lambda: self._chunk(PING), every=timings.ping_interval_s
            )
        elif fault == "oversized_event":
            self._begin_stream()
            piece = b"A" * 65536
            self._chunk(b"data: ")
            for _ in range(timings.oversized_bytes // len(piece) + 1):
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
            self._hold(self.timings.hang_s)
        self._end_stream()

    def _stream_events(self, *events: bytes) -> None:
        self._begin_stream()
        for event in events:
            self._chunk(event)
        self._end_stream()
