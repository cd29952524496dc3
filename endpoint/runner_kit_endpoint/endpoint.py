"""``Endpoint``: one actor function served as protocol v1, the same way on every host.

A stream is: ``init`` at once; the function runs (a worker thread, or a task for ``async``
functions on an ASGI server) while the stream sends its outputs as they come and a ping every
``ping_interval_s`` of quiet; then exactly one final event: ``done``, ``error``, or
``event: stopping`` when the endpoint stops (SIGTERM), and the stream ends. A probe gets
``init`` and the end. Nothing is ever sent after the final event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from runner_kit_endpoint import actor, wire

if TYPE_CHECKING:
    from collections.abc import Iterator

    from runner_kit_endpoint.server import EndpointServer

POLL_S: Final = 0.1
"""How often a waiting stream looks at the stop switch."""


def _deadline_exceeded(lifespan: float) -> bytes:
    return wire.error_event(
        "deadline_exceeded",
        f"the actor function did not return within the request lifespan ({lifespan:g} s)",
        True,
    )


def _finished(done: asyncio.Future[bytes], sink: Callable[[bytes, bool], None]) -> None:
    if done.cancelled():
        return
    exc = done.exception()
    sink(actor.error_final(exc) if exc is not None else done.result(), True)


class Endpoint:
    """An actor function as a runner endpoint: an ASGI app, or ``serve()`` on a stdlib server."""

    def __init__(
        self,
        fn: actor.ActorFunction,
        *,
        ping_interval_s: float = 5.0,
        deadline_margin_s: float = 1.0,
        runner_prefix: str = "py-",
    ) -> None:
        if not callable(fn):
            raise TypeError("Endpoint wants the actor function")
        if not ping_interval_s > 0:
            raise ValueError("ping_interval_s must be positive")
        self.fn = fn
        self.ping_interval_s = ping_interval_s
        self.deadline_margin_s = max(0.0, deadline_margin_s)
        self.runner_prefix = runner_prefix
        self._async = actor.is_async(fn)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._active = 0
        self._signal_installed = False

    # --- stopping --------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` (or SIGTERM) began a graceful stop."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """Begin a graceful stop: open streams end with ``event: stopping``; new ones get 503."""
        self._stopping.set()

    @property
    def active_streams(self) -> int:
        """``/start`` streams open right now."""
        with self._lock:
            return self._active

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no stream is open (up to ``timeout_s``); True if none is."""
        end = time.monotonic() + timeout_s
        while self.active_streams and time.monotonic() < end:
            time.sleep(0.02)
        return self.active_streams == 0

    def install_sigterm(self, on_term: Callable[[], None] | None = None) -> bool:
        """On SIGTERM: ``stop()``, then ``on_term`` or the handler that was there before.

        Only the main thread may install signal handlers; elsewhere this returns False. Under
        uvicorn (which has its own handler) the previous handler is called, so uvicorn still
        shuts down, after the open streams have sent ``stopping``. With no previous handler
        the default action (exit) runs again once the streams are closed (at most 5 s).
        """
        if self._signal_installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()
            if on_term is not None:
                on_term()
            elif callable(previous):
                previous(signum, frame)
            else:  # default action: terminate, once the streams said stopping
                signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
                threading.Thread(target=self._terminate_later, daemon=True).start()

        signal.signal(signal.SIGTERM, handler)
        self._signal_installed = True
        return True

    def _terminate_later(self) -> None:
        self.wait_idle(5.0)
        os.kill(os.getpid(), signal.SIGTERM)

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        with self._lock:
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1

    # --- one stream ------------------------------------------------------------------------

    def new_runner_id(self) -> str:
        """A fresh ``runner_id`` for one stream."""
        return f"{self.runner_prefix}{uuid.uuid4().hex}"

    def _context(
        self, request: wire.StartRequest, runner_id: str, sink: Callable[[bytes], None]
    ) -> actor.Context:
        deadline = None
        if request.lifespan_s is not None:
            # Keep a margin so the SDK's own deadline_exceeded reaches the kit before its
            # deadline for the whole stream does (at most a tenth of a short lifespan).
            margin = min(self.deadline_margin_s, request.lifespan_s / 10)
            deadline = time.monotonic() + request.lifespan_s - margin
        return actor.Context(
            runner_id=runner_id,
            actor_id=request.actor_id,
            message_id=request.message_id,
            pool=request.pool,
            total_slots=request.total_slots,
            deadline=deadline,
            _sink=sink,
            _cancelled=threading.Event(),
        )

    def stream_sync(self, request: wire.StartRequest, write: Callable[[bytes], None]) -> None:
        """Answer one request on a blocking transport (``write`` sends and flushes one event)."""
        with self._tracked():
            write(wire.init_event(runner_id := self.new_runner_id()))
            if request.probe:
                return
            events: queue.Queue[tuple[bool, bytes]] = queue.Queue()
            ctx = self._context(request, runner_id, lambda event: events.put((False, event)))

            def work() -> None:
                events.put((True, actor.call_sync(self.fn, request.state, request.input, ctx)))

            threading.Thread(target=work, name=f"actor:{runner_id}", daemon=True).start()
            try:
                self._pump_sync(request, ctx, events, write)
            finally:
                ctx._cancelled.set()

    def _pump_sync(
        self,
        request: wire.StartRequest,
        ctx: actor.Context,
        events: queue.Queue[tuple[bool, bytes]],
        write: Callable[[bytes], None],
    ) -> None:
        next_ping = time.monotonic() + self.ping_interval_s
        while True:
            verdict = self._verdict(request, ctx)
            if verdict is not None:
                write(verdict)
                return
            now = time.monotonic()
            try:
                final, event = events.get(timeout=self._wait_s(ctx, next_ping, now))
            except queue.Empty:
                if time.monotonic() >= next_ping:
                    write(wire.PING)
                    next_ping = time.monotonic() + self.ping_interval_s
                continue
            write(event)
            next_ping = time.monotonic() + self.ping_interval_s
            if final:
                return

    async def stream_async(
        self,
        request: wire.StartRequest,
        write: Callable[[bytes], Awaitable[None]],
        gone: asyncio.Event,
    ) -> None:
        """Answer one request on an event loop; ``gone`` is set when the client disconnects."""
        with self._tracked():
            runner_id = self.new_runner_id()
            await write(wire.init_event(runner_id))
            if request.probe:
                return
            loop = asyncio.get_running_loop()
            events: asyncio.Queue[tuple[bool, bytes]] = asyncio.Queue()

            def sink(event: bytes, final: bool = False) -> None:
                # From the loop or from the worker thread alike: FIFO, so outputs come first.
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody reads any more
                    loop.call_soon_threadsafe(events.put_nowait, (final, event))

            ctx = self._context(request, runner_id, sink)
            work: asyncio.Future[bytes] | None = None
            if self._async:
                work = asyncio.ensure_future(
                    actor.call_async(self.fn, request.state, request.input, ctx)
                )
                work.add_done_callback(lambda done: _finished(done, sink))
            else:
                # A daemon thread, not the loop's executor: a function that never returns must
                # not hold the server's exit (asyncio.run joins its executor's threads).
                def run() -> None:
                    sink(actor.call_sync(self.fn, request.state, request.input, ctx), True)

                threading.Thread(target=run, name=f"actor:{runner_id}", daemon=True).start()
            try:
                await self._pump_async(request, ctx, events, write, gone)
            finally:
                ctx._cancelled.set()
                if work is not None and not work.done():
                    work.cancel()

    async def _pump_async(
        self,
        request: wire.StartRequest,
        ctx: actor.Context,
        events: asyncio.Queue[tuple[bool, bytes]],
        write: Callable[[bytes], Awaitable[None]],
        gone: asyncio.Event,
    ) -> None:
        next_ping = time.monotonic() + self.ping_interval_s
        while not gone.is_set():
            verdict = self._verdict(request, ctx)
            if verdict is not None:
                await write(verdict)
                return
            now = time.monotonic()
            try:
                final, event = await asyncio.wait_for(
                    events.get(), timeout=self._wait_s(ctx, next_ping, now)
                )
            except TimeoutError:
                if time.monotonic() >= next_ping:
                    await write(wire.PING)
                    next_ping = time.monotonic() + self.ping_interval_s
                continue
            await write(event)
            next_ping = time.monotonic() + self.ping_interval_s
            if final:
                return

    def _verdict(self, request: wire.StartRequest, ctx: actor.Context) -> bytes | None:
        """The final event forced on a running function (stopping, deadline), if any."""
        if self._stopping.is_set():
            return wire.STOPPING
        if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
            return _deadline_exceeded(request.lifespan_s or 0.0)
        return None

    def _wait_s(self, ctx: actor.Context, next_ping: float, now: float) -> float:
        wait = min(next_ping - now, POLL_S)
        if ctx.deadline is not None:
            wait = min(wait, ctx.deadline - now)
        return max(wait, 0.0)

    # --- hosts -----------------------------------------------------------------------------

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        """The ASGI 3 application (uvicorn, hypercorn, the Lambda Web Adapter, Cloud Run)."""
        from runner_kit_endpoint.asgi import handle

        await handle(self, scope, receive, send)

    def server(self, host: str = "127.0.0.1", port: int = 0) -> EndpointServer:
        """A stdlib HTTP server for this endpoint (not started: ``with ... as server``)."""
        from runner_kit_endpoint.server import EndpointServer

        return EndpointServer(self, host, port)

    def serve(self, host: str = "127.0.0.1", port: int = 8000) -> None:
        """Serve on a stdlib server until SIGTERM or Ctrl-C; streams end with ``stopping``."""
        from runner_kit_endpoint.server import serve_forever

        serve_forever(self, host, port)

    def main(self, argv: Sequence[str] | None = None) -> None:
        """``python my_endpoint.py [--host H] [--port P]`` (``$PORT`` is the default port)."""
        import argparse

        parser = argparse.ArgumentParser(description="a runner-kit protocol v1 endpoint")
        parser.add_argument("--host", default="127.0.0.1", help="address to bind")
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("PORT", "8000")), help="port"
        )
        args = parser.parse_args(argv)
        self.serve(args.host, args.port)
