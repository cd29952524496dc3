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

Faults (``FAULTS``; ``http_<N>`` works for any status N) and how each answers live in
``infra.dev_faults``.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

from infra.dev_faults import (
    FAULTS,
    HOLD_STEP,
    ClientGone,
    FaultStream,
    FaultTimings,
    checked_steps,
    is_fault,
)
from infra.serving import Service, StreamingHTTPServer, http_url, serve_in_thread


@dataclass(frozen=True)
class ReceivedRequest:
    """What a ``/start`` request carried (for tests that check headers and bodies)."""

    path: str
    headers: dict[str, str]
    body: Any
    behaviour: str = "healthy"
    """The step or fault this request was answered with (``healthy``, ``hold:<ms>``, a fault)."""


class _Server(StreamingHTTPServer):
    def __init__(self, address: tuple[str, int], runner: DevRunner) -> None:
        self.runner = runner
        super().__init__(address, _Handler)


class _Handler(FaultStream):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.runner = self.server.runner
        self.timings = self.runner.timings
        self.stopping = self.runner._stopping

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
        except (ClientGone, OSError):
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
            hold = HOLD_STEP.fullmatch(step)
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


class DevRunner(Service):
    """The dev runner server; ``with DevRunner() as runner: ... runner.url``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hang_s: float = FaultTimings.hang_s,
        slow_init_s: float = FaultTimings.slow_init_s,
        ping_interval_s: float = FaultTimings.ping_interval_s,
        keepalive_s: float = FaultTimings.keepalive_s,
        oversized_bytes: int = FaultTimings.oversized_bytes,
    ) -> None:
        self.host = host
        self.port = port
        self.timings = FaultTimings(
            hang_s=hang_s,
            slow_init_s=slow_init_s,
            ping_interval_s=ping_interval_s,
            keepalive_s=keepalive_s,
            oversized_bytes=oversized_bytes,
        )
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

    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = serve_in_thread(self._server, f"dev-runner:{self.port}")
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

    # addresses

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash (a runner config's ``url``)."""
        if self._server is None:
            raise RuntimeError("the dev runner is not started")
        return http_url(self.host, self.port)

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
        checked = checked_steps(steps)
        with self._lock:
            self._script = deque(checked)

    def set_random(self, steps: list[str], *, seed: int = 0) -> None:
        """Every message start takes a seeded random step from ``steps`` (empty: off)."""
        checked = checked_steps(steps)
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
