"""Start runners: ``POST {url}/start``, read the SSE answer, classify every way it can fail.

One call of ``start(target, body)`` is one attempt (DESIGN.md §4). It yields typed frames,
``InitFrame`` first, and ends after ``done``, ``error`` or ``stopping``; failures are
``RunnerError(<RunnerPoolError>)`` before ``init`` and ``RunnerNoResponseError`` after it
(``attempt.py``). Order of checks, most specific first: URL and address guard, DNS, transport
errors, status (httpx-sse never looks at it), redirect, content type, then each event's size,
base64, JSON and frame schema.

There is one client, ``AsyncRunnerClient``. The sync callers (the pool manager's probes, the
CLI) use ``RunnerClient``, which runs it on an event loop of its own per start.

Header values are secrets: they are never logged, and no error or repr contains them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from adapters.clock import SYSTEM_CLOCK
from adapters.runner import guard
from adapters.runner.attempt import Attempt, StartLimits
from adapters.runner.classify import (
    answer_error,
    body_text,
    check_answer,
    classify_exception,
    connection_error,
    guard_error,
    scrub,
    unreadable,
)
from adapters.runner.transport import (
    StartTarget,
    guarded_transport,
    http_client,
    set_read_deadline,
    start_request,
    start_url,
)
from core.errors import InternalError, ServerlessHttpError
from core.exceptions import RunnerError, RunnerNoResponseError
from core.models import header_problem
from core.ports import Clock, ProbeResult
from core.protocol import Frame, InitFrame, probe_body
from core.redaction import redact_text

logger = logging.getLogger("runner_kit.sse")


def default_allow_loopback(allow_loopback: bool | None = None) -> bool:
    """Loopback endpoints are allowed except inside Lambda (there it is the runtime API)."""
    if allow_loopback is not None:
        return allow_loopback
    from adapters.settings import in_lambda

    return not in_lambda()


async def pin_target(
    target: StartTarget,
    *,
    allow_loopback: bool,
    timeout_s: float,
    resolver: guard.Resolver | None = None,
) -> guard.Pinned:
    """The checked, resolved and pinned ``/start`` URL of ``target``; raises ``RunnerError``."""
    if target.unresolved is not None:
        raise RunnerError(target.unresolved)
    try:
        return await guard.resolve_and_pin(
            start_url(target.url),
            allow_private=target.allow_private_network,
            allow_loopback=allow_loopback,
            timeout_s=timeout_s,
            resolver=resolver,
        )
    except (guard.Blocked, guard.ResolveFailed, httpx.InvalidURL, ValueError) as exc:
        raise guard_error(exc) from exc


class FrameStream:
    """The frames of one open ``/start`` stream: ``async for``, or ``batch()`` per read."""

    __slots__ = ("_attempt", "_chunks", "_frames", "_response")

    def __init__(self, response: httpx.Response, attempt: Attempt) -> None:
        self._response = response
        self._attempt = attempt
        self._chunks = response.aiter_bytes()
        self._frames = self._each()

    async def batch(self) -> list[Frame] | None:
        """The frames of the next read (maybe none); None once the stream is over."""
        attempt = self._attempt
        if attempt.finished:
            return None
        if attempt.pending:
            return attempt.drain()
        when, kind = attempt.next_deadline()
        set_read_deadline(self._response, when)
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            return attempt.end_of_stream()
        except Exception as exc:
            attempt.broken(exc, kind)
        return attempt.feed(chunk)

    def pending(self) -> list[Frame]:
        """Frames that need no read: the next slice of the last read's events (maybe none)."""
        attempt = self._attempt
        return attempt.drain() if attempt.pending and not attempt.finished else []

    async def _each(self) -> AsyncGenerator[Frame, None]:
        while True:
            frames = await self.batch()
            if frames is None:
                return
            for frame in frames:
                yield frame
            del frames  # free this read's frames before the next read makes more

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self._frames  # ``async for`` runs the generator itself, not __anext__

    async def __anext__(self) -> Frame:
        return await self._frames.__anext__()

    async def aclose(self) -> None:
        """Close the body iterator and the response."""
        try:
            await self._frames.aclose()
            await self._chunks.aclose()  # type: ignore[attr-defined]
        finally:
            await _aclose_quietly(self._response)


async def _aclose_quietly(response: httpx.Response) -> None:
    try:
        await response.aclose()
    except Exception:  # a broken connection may fail to close; nothing is left to do
        logger.debug("closing a runner stream failed", exc_info=True)


class AsyncRunnerClient:
    """Runner starts (asyncio or trio); many streams may run at once on one client."""

    def __init__(
        self,
        limits: StartLimits | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: guard.Resolver | None = None,
        allow_loopback: bool | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.limits = limits or StartLimits()
        self.clock = clock
        self._resolver = resolver
        self._allow_loopback = default_allow_loopback(allow_loopback)
        self._http = http_client(
            transport or guarded_transport(allow_loopback=self._allow_loopback, clock=clock)
        )

    async def __aenter__(self) -> AsyncRunnerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._http.aclose()

    @asynccontextmanager
    async def start(
        self, target: StartTarget, body: Mapping[str, Any], *, deadline: float | None = None
    ) -> AsyncIterator[FrameStream]:
        """Open one ``/start`` stream; iterate the frames inside the ``async with`` block.

        ``deadline`` is absolute, on this client's ``clock.monotonic()``.
        """
        try:
            stream = await self._open(target, body, deadline)
        except (RunnerError, RunnerNoResponseError) as exc:
            scrub(exc, target.secrets)
            raise
        try:
            yield stream
        except (RunnerError, RunnerNoResponseError) as exc:
            scrub(exc, target.secrets)
            raise
        finally:
            await stream.aclose()

    async def _open(
        self, target: StartTarget, body: Mapping[str, Any], deadline: float | None
    ) -> FrameStream:
        attempt = Attempt(self.limits, deadline, self.clock, target.secrets)
        timeout_s = attempt.connect_timeout()  # the caller's deadline may have passed already
        pinned = await pin_target(
            target,
            allow_loopback=self._allow_loopback,
            timeout_s=timeout_s,
            resolver=self._resolver,
        )
        for name, value in target.headers.items():
            if header_problem(name, value) == "invalid_value":
                # httpx would quote the value in its error: say which header, never what it holds.
                raise connection_error(
                    f"header {name!r} has a value that is not a valid HTTP field value",
                    "protocol",
                )
        logger.debug("starting a runner: pool=%s host=%s", target.pool.id, pinned.host)
        try:
            request = start_request(self._http, target, body, pinned, attempt.request_timeout())
            response = await self._http.send(request, stream=True)
        except RunnerError:
            raise
        except Exception as exc:
            if isinstance(exc, httpx.ReadTimeout):
                attempt.timed_out(attempt.pre_body_deadline()[1], exc)
            raise RunnerError(classify_exception(exc)) from exc
        try:
            verdict = check_answer(response)
            if verdict == "ok":
                return FrameStream(response, attempt)
            if verdict != "status":
                raise answer_error(response, verdict)
            text = redact_text(await self._error_body(response, attempt), target.secrets)
            raise RunnerError(ServerlessHttpError(status_code=response.status_code, body=text))
        except BaseException:
            await _aclose_quietly(response)
            raise

    async def _error_body(self, response: httpx.Response, attempt: Attempt) -> str:
        set_read_deadline(response, attempt.pre_body_deadline()[0])
        cap = self.limits.max_error_body_bytes
        data = bytearray()
        chunks = response.aiter_bytes()
        try:
            async for chunk in chunks:
                data += chunk
                if len(data) >= cap:
                    break
        except Exception as exc:
            if not data:
                return unreadable(exc)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        return body_text(bytes(data[:cap]), response)  # the error model keeps 512 bytes


class RunnerClient:
    """``AsyncRunnerClient`` for sync callers: each start runs on an event loop of its own."""

    def __init__(self, limits: StartLimits | None = None, **options: Any) -> None:
        self.limits = limits or StartLimits()
        self._options = options  # AsyncRunnerClient's keyword options

    def __enter__(self) -> RunnerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing stays open between starts."""

    @contextmanager
    def start(
        self, target: StartTarget, body: Mapping[str, Any], *, deadline: float | None = None
    ) -> Iterator[Iterator[Frame]]:
        """``AsyncRunnerClient.start``; iterate the frames inside the ``with`` block."""
        with asyncio.Runner() as loop:
            client = self.connect()
            opened = client.start(target, body, deadline=deadline)
            try:
                stream = loop.run(opened.__aenter__())
                try:
                    yield _frames(loop, stream)
                except BaseException as exc:
                    if not loop.run(opened.__aexit__(type(exc), exc, exc.__traceback__)):
                        raise
                else:
                    loop.run(opened.__aexit__(None, None, None))
            finally:
                loop.run(client.aclose())

    def connect(self) -> AsyncRunnerClient:
        """A new ``AsyncRunnerClient`` with this client's limits and options."""
        return AsyncRunnerClient(self.limits, **self._options)


def _frames(loop: asyncio.Runner, stream: FrameStream) -> Iterator[Frame]:
    # One trip through the loop per read of the body, not per frame: the sync hot path.
    run = loop.get_loop().run_until_complete  # Runner.run would also swap SIGINT handlers
    while True:
        frames: list[Frame] | None = stream.pending()
        if not frames:
            frames = run(stream.batch())
            if frames is None:
                return
        yield from frames
        del frames  # free these frames before the next slice makes more (GC work)


async def aprobe(
    client: AsyncRunnerClient, target: StartTarget, *, deadline: float | None = None
) -> ProbeResult:
    """One probe start: success once ``init`` arrives; the stream is closed right after."""
    started = client.clock.monotonic()
    try:
        async with client.start(target, probe_body(), deadline=deadline) as frames:
            async for frame in frames:
                if isinstance(frame, InitFrame):
                    took = client.clock.monotonic() - started
                    return ProbeResult(True, frame.runner_id, took, None)
    except RunnerError as exc:
        return ProbeResult(False, None, None, exc.error)
    return ProbeResult(False, None, None, InternalError(message="stream ended without init"))


def probe(
    client: RunnerClient, target: StartTarget, *, deadline: float | None = None
) -> ProbeResult:
    """``aprobe`` for sync callers."""

    async def main() -> ProbeResult:
        async with client.connect() as connected:
            return await aprobe(connected, target, deadline=deadline)

    return asyncio.run(main())
