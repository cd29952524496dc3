"""Start runners: ``POST {url}/start``, read the SSE answer, classify every way it can fail.

One call of ``start(target, body)`` is one attempt (DESIGN.md §4). It yields typed frames,
``InitFrame`` first, and ends after ``done``, ``error`` or ``stopping``. Failures:

- before ``init`` (the endpoint's fault; the tracker records these) ->
  ``RunnerError(<RunnerPoolError>)`` raised ``from`` the cause;
- after ``init``, silence past ``idle_timeout_s``, the caller's deadline, a broken or ended
  stream -> ``RunnerNoResponseError(runner_id)``; a frame that does not decode is still the
  endpoint's fault -> ``RunnerError``.

Order of checks, most specific first: URL and address guard, DNS, transport errors, status
(httpx-sse never looks at it), redirect, content type, then each event's size, base64, JSON and
frame schema. Time is bounded by deadlines, not per-read timeouts (httpx's ``read=`` restarts
on every ping): connect, time to ``init`` (pings do not count), idle with no event (pings and
comments count), and the caller's absolute ``deadline`` (``time.monotonic()``).

Header values are secrets: they are never logged, and no error or repr contains them.
"""

from __future__ import annotations

import logging
import math
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, TypeAlias, cast

import httpx
from httpx_sse import SSEError

from adapters import outbound
from core.errors import (
    InternalError,
    RunnerPoolError,
    ServerlessConnectionError,
    ServerlessHttpError,
    ServerlessInvalidPayload,
    ServerlessStreamEndedEarly,
)
from core.exceptions import RunnerError, RunnerNoResponseError
from core.models import PoolKey, RunnerConfig, header_problem
from core.protocol import (
    START_PATH,
    DoneFrame,
    ErrorFrame,
    Frame,
    InitFrame,
    OutputFrame,
    StoppingFrame,
    decode_frame,
    decode_frames,
    frame_json,
    probe_body,
)
from core.redaction import (
    contains_secret,
    redact_error,
    redact_text,
    secret_forms,
    url_secrets,
    without_userinfo,
)

if TYPE_CHECKING:
    from adapters.settings import Settings

logger = logging.getLogger("runner_kit.sse")

USER_AGENT: Final = "runner-kit/0.1"
EVENT_STREAM: Final = "text/event-stream"

DeadlineKind: TypeAlias = Literal["init", "idle", "deadline"]


@dataclass(frozen=True)
class StartLimits:
    """Timeouts and size caps of one start; small values for tests, settings in Lambda."""

    connect_timeout_s: float = 5.0
    init_timeout_s: float = 30.0
    idle_timeout_s: float = 60.0
    max_event_bytes: int = 1024 * 1024
    max_error_body_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "init_timeout_s", "idle_timeout_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.max_event_bytes <= 0 or self.max_error_body_bytes <= 0:
            raise ValueError("size caps must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> StartLimits:
        """The limits configured for the functions (``adapters.settings``)."""
        return cls(
            connect_timeout_s=settings.connect_timeout_s,
            init_timeout_s=settings.init_timeout_s,
            idle_timeout_s=settings.idle_timeout_s,
            max_event_bytes=settings.max_event_bytes,
        )


@dataclass(frozen=True)
class StartTarget:
    """Where and how to start a runner. ``headers`` are secrets: the repr shows names only."""

    url: str
    headers: Mapping[str, str]
    pool: PoolKey
    total_slots: int
    request_lifespan: int
    allow_private_network: bool = False
    secrets: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    """Every form of the header values and URL userinfo, for ``core.redaction``."""
    unresolved: RunnerPoolError | None = field(default=None, repr=False, compare=False)
    """Why a referenced header value could not be read: every start fails with it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", dict(self.headers))  # a private copy
        values = [*self.headers.values(), *url_secrets(self.url)]
        object.__setattr__(self, "secrets", secret_forms(values))

    def __repr__(self) -> str:
        names = ", ".join(f"{name}: ***" for name in self.headers)
        return (
            f"StartTarget(url={without_userinfo(self.url)!r}, headers={{{names}}}, "
            f"pool={self.pool.id!r}, "
            f"total_slots={self.total_slots}, request_lifespan={self.request_lifespan}, "
            f"allow_private_network={self.allow_private_network})"
        )

    @classmethod
    def from_config(cls, config: RunnerConfig) -> StartTarget:
        """The target of a saved runner config, its Secrets Manager references read (cached)."""
        headers = config.header_values()
        unresolved: RunnerPoolError | None = None
        if config.header_secrets:
            from adapters.secrets import SecretUnavailableError, resolve_secrets

            try:
                headers.update(resolve_secrets(config.header_secrets))
            except SecretUnavailableError as exc:
                unresolved = InternalError(message=str(exc))
        return cls(
            url=config.url,
            headers=headers,
            unresolved=unresolved,
            pool=config.pool,
            total_slots=config.slots_per_runner * config.max_runners,
            request_lifespan=config.request_lifespan,
            allow_private_network=config.allow_private_network,
        )


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe start: ``ok`` once the ``init`` frame arrived."""

    ok: bool
    runner_id: str | None
    time_to_init_s: float | None
    error: RunnerPoolError | None


# --- Classification ------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


TRANSPORT_REASONS: Final[tuple[tuple[type[BaseException], str], ...]] = (
    # Most specific first: the first isinstance match wins. A test checks every httpx
    # exception is listed here or in INTERNAL_EXCEPTIONS.
    (SSEError, "content_type"),
    (httpx.ConnectTimeout, "timeout"),
    (httpx.ReadTimeout, "timeout"),
    (httpx.WriteTimeout, "timeout"),
    (httpx.PoolTimeout, "timeout"),
    (httpx.TimeoutException, "timeout"),
    (httpx.ConnectError, "connect"),
    (httpx.ReadError, "read"),
    (httpx.WriteError, "connect"),  # the request could not be delivered
    (httpx.CloseError, "read"),
    (httpx.NetworkError, "read"),
    (httpx.RemoteProtocolError, "protocol"),
    (httpx.LocalProtocolError, "protocol"),
    (httpx.ProtocolError, "protocol"),
    (httpx.ProxyError, "connect"),
    (httpx.UnsupportedProtocol, "invalid_url"),
    (httpx.TransportError, "read"),
    (httpx.RequestError, "read"),
    (httpx.DecodingError, "protocol"),  # a broken content-encoding
    (httpx.TooManyRedirects, "redirect"),
    (httpx.InvalidURL, "invalid_url"),
    (TimeoutError, "timeout"),
    (ConnectionRefusedError, "connect"),
    (ConnectionError, "read"),
    (OSError, "connect"),
)
"""Transport exception -> ``serverless_connection_error`` reason."""

INTERNAL_EXCEPTIONS: Final[tuple[type[BaseException], ...]] = (
    httpx.StreamError,  # StreamConsumed, StreamClosed, ResponseNotRead, RequestNotRead
    httpx.HTTPStatusError,  # only from raise_for_status, which the kit does not call
    httpx.CookieConflict,
    httpx.HTTPError,  # the abstract base; every concrete transport failure is listed above
)
"""httpx exceptions that can only mean a bug in the kit: they become ``internal_error``."""


def classify_exception(exc: BaseException) -> RunnerPoolError:
    """The ``RunnerPoolError`` for an exception raised while starting or reading a runner."""
    if isinstance(exc, RunnerError):
        return exc.error
    chain = list(_chain(exc))
    if any(isinstance(e, outbound.BlockedAddressError) for e in chain):
        return ServerlessConnectionError(message=str(exc), reason="blocked_address")
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in chain):
        return ServerlessConnectionError(message=_describe(exc), reason="tls")
    for kind, reason in TRANSPORT_REASONS:
        if isinstance(exc, kind):
            return ServerlessConnectionError(message=_describe(exc), reason=reason)
    return InternalError(message=f"unexpected {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _connection_error(message: str, reason: str) -> RunnerError:
    return RunnerError(ServerlessConnectionError(message=message, reason=reason))


# --- SSE framing: bytes in, events out, with a size cap ------------------------------------


Event: TypeAlias = bytes | tuple[bytes, bytes | None]
"""A parsed event: the data of a one-line ``message`` event (the hot path), or
``(event type, data)`` with data None when the event had no ``data`` line."""


class _EventTooLarge(Exception):
    pass


class SSEParser:
    """An incremental ``text/event-stream`` parser on bytes (WHATWG rules), capped per event.

    ``feed`` returns ``Event``s: bare ``bytes`` for a one-line ``message`` event, otherwise
    ``(event_type, data)`` with ``data`` None when the event had no ``data`` line; ``mixed``
    says whether the last batch held any pair. ``comments`` counts comment lines (keep-alives).
    A stream's last event is dispatched even without its closing blank line, provided its last
    line was complete (a line cut by the end of the stream is dropped, as the spec says).
    """

    __slots__ = (
        "_cr",
        "_data",
        "_event",
        "_max",
        "_partial",
        "_parts",
        "_size",
        "comments",
        "mixed",
    )

    def __init__(self, max_event_bytes: int) -> None:
        self._max = max_event_bytes
        self._cr = False
        self._parts: list[bytes] = []
        self._partial = 0
        self._event: bytes | None = None
        self._data: list[bytes] = []
        self._size = 0
        self.comments = 0
        self.mixed = False  # the last feed() returned some (type, data) pairs

    def feed(self, chunk: bytes) -> list[Event]:
        self.mixed = False
        if self._cr:
            chunk = b"\r" + chunk
            self._cr = False
        if chunk.endswith(b"\r"):  # may be the first half of \r\n: decide with the next chunk
            self._cr = True
            chunk = chunk[:-1]
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[Event] = []
        pos = 0
        if self._parts:  # finish the line a previous chunk left open
            newline = chunk.find(b"\n")
            if newline < 0:
                self._keep(chunk)
                return events
            self._parts.append(chunk[:newline])
            line = b"".join(self._parts)
            self._parts = []
            self._partial = 0
            self._line(line, events)
            pos = newline + 1
        end = len(chunk)
        # Inside an event (fields pending): go line by line until its blank line.
        while pos < end and (self._event is not None or self._data or self._size):
            newline = chunk.find(b"\n", pos)
            if newline < 0:
                break
            self._line(chunk[pos:newline], events)
            pos = newline + 1
        if pos >= end:
            return events
        if self._event is not None or self._data or self._size:
            rest = chunk[pos:]
        else:
            # At an event boundary: whole blocks at C speed. The hot path is one "data: " line.
            blocks = chunk[pos:].split(b"\n\n")
            rest = blocks.pop()
            cap = self._max
            append = events.append
            for block in blocks:
                if block[:6] == b"data: " and b"\n" not in block:
                    if len(block) >= cap:
                        raise _EventTooLarge
                    append(block[6:])
                else:
                    for line in block.split(b"\n"):
                        self._line(line, events)
                    self._line(b"", events)
        lines = rest.split(b"\n")
        tail = lines.pop()
        for line in lines:
            self._line(line, events)
        if tail:
            self._keep(tail)
        return events

    def _keep(self, partial: bytes) -> None:
        self._parts.append(partial)
        self._partial += len(partial)
        if self._size + self._partial > self._max:
            raise _EventTooLarge

    def finish(self) -> list[Event]:
        """End of stream: dispatch a pending event whose lines were all complete."""
        events: list[Event] = []
        self.mixed = False
        if self._cr:  # a final lone \r ended a line
            self._cr = False
            events.extend(self.feed(b"\n"))
        if not self._parts:
            self._line(b"", events)
        self._parts = []
        return events

    def _line(self, line: bytes, events: list[Event]) -> None:
        if not line:
            if self._event is not None or self._data:
                self.mixed = True
                events.append((self._event or b"", b"\n".join(self._data) if self._data else None))
            self._event = None
            self._data = []
            self._size = 0
            return
        self._size += len(line) + 1
        if self._size > self._max:
            raise _EventTooLarge
        if line[0] == 0x3A:  # ':' comment, e.g. a proxy's keep-alive
            self.comments += 1
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        # id, retry and unknown fields carry nothing for this protocol.


# --- One attempt: timers and frame rules, shared by the sync and async clients -------------


class _Attempt:
    """The state of one start attempt: phase, timers, and how each failure is classified."""

    __slots__ = (
        "comments_seen",
        "finished",
        "idle_deadline",
        "init_deadline",
        "limits",
        "parser",
        "runner_id",
        "secrets",
        "started",
        "total_deadline",
    )

    def __init__(
        self, limits: StartLimits, deadline: float | None, secrets: tuple[str, ...] = ()
    ) -> None:
        self.limits = limits
        self.secrets = secrets
        self.started = time.monotonic()
        self.init_deadline = self.started + limits.init_timeout_s
        self.idle_deadline = self.started + limits.idle_timeout_s
        self.total_deadline = math.inf if deadline is None else deadline
        self.runner_id: str | None = None
        self.finished = False
        self.parser = SSEParser(limits.max_event_bytes)
        self.comments_seen = 0

    # Deadlines.

    def next_deadline(self) -> tuple[float, DeadlineKind]:
        """The earliest deadline that applies now, and which one it is."""
        best: tuple[float, DeadlineKind] = (self.idle_deadline, "idle")
        if self.runner_id is None and self.init_deadline <= best[0]:
            best = (self.init_deadline, "init")
        if self.total_deadline <= best[0]:
            best = (self.total_deadline, "deadline")
        return best

    def pre_body_deadline(self) -> tuple[float, DeadlineKind]:
        """Until the response starts, only time to init and the caller's deadline apply."""
        if self.total_deadline < self.init_deadline:
            return self.total_deadline, "deadline"
        return self.init_deadline, "init"

    def connect_timeout(self) -> float:
        when, kind = self.pre_body_deadline()
        remaining = when - time.monotonic()
        if remaining <= 0:
            self.timed_out(kind)
        return min(self.limits.connect_timeout_s, remaining)

    def timed_out(self, kind: DeadlineKind, cause: BaseException | None = None) -> NoReturn:
        self.finished = True
        limits = self.limits
        if self.runner_id is None:
            message = {
                "init": f"no init frame within {limits.init_timeout_s:g} s",
                "idle": f"no event for {limits.idle_timeout_s:g} s before init",
                "deadline": "the caller's deadline passed before init",
            }[kind]
            raise _connection_error(message, "timeout") from cause
        detail = {
            "init": "timed out",  # not reachable after init; kept total for safety
            "idle": f"no event for {limits.idle_timeout_s:g} s",
            "deadline": "the caller's deadline passed before done",
        }[kind]
        raise RunnerNoResponseError(self.runner_id, detail) from cause

    def check_clock(self) -> None:
        when, kind = self.next_deadline()
        if time.monotonic() >= when:
            self.timed_out(kind)

    # Failures of the transport while reading the body.

    def broken(self, exc: BaseException, kind: DeadlineKind) -> NoReturn:
        self.finished = True
        if isinstance(exc, httpx.ReadTimeout | TimeoutError):
            self.timed_out(kind, exc)
        if self.runner_id is not None:
            raise RunnerNoResponseError(self.runner_id, _describe(exc)) from exc
        if isinstance(exc, httpx.RemoteProtocolError):
            # The headers were fine, so the body was cut (e.g. mid-chunk): a broken read.
            raise _connection_error(_describe(exc), "read") from exc
        raise RunnerError(classify_exception(exc)) from exc

    # Events to frames.

    def feed(self, chunk: bytes) -> list[Frame]:
        try:
            events = self.parser.feed(chunk)
        except _EventTooLarge:
            self._too_large()
        return self._frames(events)

    def end_of_stream(self) -> list[Frame]:
        try:
            frames = self._frames(self.parser.finish())
        except _EventTooLarge:
            self._too_large()
        if self.finished:
            return frames
        self.finished = True
        if self.runner_id is None:
            raise RunnerError(ServerlessStreamEndedEarly())
        raise RunnerNoResponseError(self.runner_id, "stream ended without done")

    def _too_large(self) -> NoReturn:
        self.finished = True
        raise _connection_error(
            f"an event exceeded {self.limits.max_event_bytes} bytes", "too_large"
        )

    def _frames(self, events: list[Event]) -> list[Frame]:
        active = bool(events) or self.parser.comments != self.comments_seen
        self.comments_seen = self.parser.comments
        try:
            frames = self._decode_all(events)
        except RunnerError:
            self.finished = True
            raise
        if active:
            self.idle_deadline = time.monotonic() + self.limits.idle_timeout_s
        if not self.finished:
            self.check_clock()
        return frames

    def _decode_all(self, events: list[Event]) -> list[Frame]:
        if self.runner_id is not None and events and not self.parser.mixed:
            # The hot path: a started runner and a chunk of plain data events.
            return self._decode_run(cast(list[bytes], events))  # not mixed: all bytes
        # A chunk with other events (pings, an event split across chunks, ...): plain data
        # events after init still decode in runs, in order, so one split event per chunk does
        # not send the whole chunk down the one-by-one path.
        out: list[Frame] = []
        run: list[bytes] = []
        for event in events:
            if isinstance(event, bytes):
                data: bytes | None = event
            else:
                name, data = event
                if name and name != b"message":
                    if run:
                        out.extend(self._decode_run(run))
                        run = []
                        if self.finished:
                            break
                    if name == b"stopping":
                        if self.runner_id is None:
                            raise RunnerError(ServerlessStreamEndedEarly())
                        out.append(self._accept(StoppingFrame()))
                        break
                    continue  # ping and unknown event types: activity only
            if data is None:
                continue  # an event without data is not dispatched (WHATWG)
            if self.runner_id is None:
                out.append(self._accept(decode_frame(data)))  # init first, on its own
                if self.finished:
                    break
            else:
                run.append(data)
        if run and not self.finished:
            out.extend(self._decode_run(run))
        return out

    def _decode_run(self, datas: list[bytes]) -> list[Frame]:
        """Frames of consecutive data events after init: one batched decode, then the
        protocol checks on the frames that are not outputs; stops at the final frame."""
        try:
            frames = decode_frames(datas)
        except RunnerError:  # decode one by one, to raise at the bad frame, not before
            out: list[Frame] = []
            for data in datas:
                out.append(self._accept(decode_frame(data)))
                if self.finished:
                    break
            return out
        for index, frame in enumerate(frames):
            if type(frame) is not OutputFrame:
                frames[index] = self._accept(frame)
                if self.finished:
                    del frames[index + 1 :]
                    break
        return frames

    def _accept(self, frame: Frame) -> Frame:
        if self.runner_id is None:
            if not isinstance(frame, InitFrame):
                self._out_of_order(frame, f"expected an init frame first, got {frame.type!r}")
            if self.secrets and contains_secret(frame.runner_id, self.secrets):
                frame = replace(frame, runner_id=redact_text(frame.runner_id, self.secrets))
            self.runner_id = frame.runner_id
            logger.debug("runner %s started after %.3f s", frame.runner_id, self.elapsed())
        elif isinstance(frame, InitFrame):
            self._out_of_order(frame, "a second init frame")
        elif isinstance(frame, DoneFrame | ErrorFrame | StoppingFrame):
            self.finished = True
            if isinstance(frame, ErrorFrame) and self.secrets:
                # The actor's own error message is shown and stored: no echoed secret in it.
                frame = replace(
                    frame,
                    code=redact_text(frame.code, self.secrets),
                    message=redact_text(frame.message, self.secrets),
                )
        return frame

    def _out_of_order(self, frame: Frame, message: str) -> NoReturn:
        self.finished = True
        raise RunnerError(ServerlessInvalidPayload(message=message, raw_payload=frame_json(frame)))

    def elapsed(self) -> float:
        return time.monotonic() - self.started


# --- Request and response checks, shared --------------------------------------------------


def start_url(url: str) -> httpx.URL:
    """``{url without trailing /}/start``, keeping any query string."""
    parsed = httpx.URL(url)
    return parsed.copy_with(path=parsed.path.rstrip("/") + START_PATH)


def _reserved_headers(target: StartTarget) -> dict[str, str]:
    return {
        "x-runner-pool": target.pool.id,
        "x-runner-total-slots": str(target.total_slots),
        "x-runner-request-lifespan": str(target.request_lifespan),
        "accept": EVENT_STREAM,
        "cache-control": "no-store",
    }


@dataclass
class _Plan:
    url: httpx.URL
    host: str
    port: int
    allow_private: bool


def _plan(target: StartTarget) -> _Plan:
    try:
        url = start_url(target.url)
        host, port = outbound.check_url(url)
    except outbound.Blocked as exc:
        raise _connection_error(exc.message, exc.reason) from exc
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise _connection_error(f"invalid runner URL: {exc}", "invalid_url") from exc
    return _Plan(url, host, port, target.allow_private_network)


def _request(
    http: httpx.Client | httpx.AsyncClient,
    target: StartTarget,
    body: Mapping[str, Any],
    plan: _Plan,
    address: str,
    attempt: _Attempt,
) -> httpx.Request:
    for name, value in target.headers.items():
        if header_problem(name, value) == "invalid_value":
            # httpx would quote the value in its error: say which header, never what it holds.
            raise _connection_error(
                f"header {name!r} has a value that is not a valid HTTP field value", "protocol"
            )
    url, host_header, extensions = outbound.pin(plan.url, address)
    headers = httpx.Headers(dict(target.headers))
    headers.update(host_header)
    headers.update(_reserved_headers(target))  # the kit's reserved headers win
    pre_body, _ = attempt.pre_body_deadline()
    budget = max(pre_body - time.monotonic(), 0.001)
    timeout = httpx.Timeout(
        connect=attempt.connect_timeout(),
        read=None if math.isinf(budget) else budget,
        write=min(budget, attempt.limits.connect_timeout_s),
        pool=min(budget, attempt.limits.connect_timeout_s),
    )
    return http.build_request(
        "POST", url, headers=headers, json=dict(body), timeout=timeout, extensions=extensions
    )


def _address_or_raise(plan: _Plan, addresses: list[str], allow_loopback: bool) -> str:
    try:
        return outbound.choose_address(
            plan.host, addresses, allow_private=plan.allow_private, allow_loopback=allow_loopback
        )
    except outbound.Blocked as exc:
        raise _connection_error(exc.message, exc.reason) from exc


def _dns_failed(plan: _Plan, exc: BaseException) -> RunnerError:
    return _connection_error(f"cannot resolve {plan.host}: {_describe(exc)}", "dns")


def _deadline_stream(
    response: httpx.Response,
) -> outbound.DeadlineStream | outbound.AsyncDeadlineStream | None:
    stream = response.extensions.get("network_stream")
    if isinstance(stream, outbound.DeadlineStream | outbound.AsyncDeadlineStream):
        return stream
    return None  # another transport (MockTransport in tests): deadlines apply between chunks


def _media_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).partition(";")[0].strip().lower()


def _redirect_error(response: httpx.Response) -> RunnerError:
    location = response.headers.get("location", "")
    shown = location.split("?", 1)[0] if location else "(no Location header)"
    return _connection_error(
        f"HTTP {response.status_code} redirect to {shown} not followed "
        "(runner URLs must answer /start directly)",
        "redirect",
    )


def _content_type_error(response: httpx.Response) -> RunnerError:
    got = response.headers.get("content-type") or "(none)"
    return _connection_error(
        f"HTTP 200 with content-type {got!r}, expected {EVENT_STREAM}", "content_type"
    )


def _body_text(data: bytes, response: httpx.Response) -> str:
    encoding = response.charset_encoding or "utf-8"
    try:
        return data.decode(encoding, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def _unreadable(exc: BaseException) -> str:
    return f"<response body unreadable: {type(exc).__name__}>"


def _initial_checks(response: httpx.Response) -> str:
    """``"ok"``, or what is wrong with the response: ``"status"``, ``"redirect"`` or ``"type"``."""
    if response.status_code == 200:
        return "ok" if _media_type(response) == EVENT_STREAM else "type"
    if 300 <= response.status_code < 400 and "location" in response.headers:
        return "redirect"
    return "status"


# --- Sync client ---------------------------------------------------------------------------


def _frames(response: httpx.Response, attempt: _Attempt) -> Generator[Frame, None, None]:
    """Frames of one open stream; ends after a terminal frame, raises on any failure."""
    chunks = response.iter_bytes()
    net = _deadline_stream(response)
    while not attempt.finished:
        when, kind = attempt.next_deadline()
        if net is not None:
            net.read_deadline = when
        try:
            chunk = next(chunks)
        except StopIteration:
            yield from attempt.end_of_stream()
            return
        except Exception as exc:
            attempt.broken(exc, kind)
        yield from attempt.feed(chunk)


class RunnerClient:
    """Sync runner starts. One instance per process; thread-safe like ``httpx.Client``."""

    def __init__(
        self,
        limits: StartLimits | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        resolver: outbound.Resolver | None = None,
        allow_loopback: bool | None = None,
    ) -> None:
        self.limits = limits or StartLimits()
        self._resolver = resolver
        self._allow_loopback = _default_allow_loopback(allow_loopback)
        self._http = httpx.Client(
            transport=transport or outbound.guarded_transport(allow_loopback=self._allow_loopback),
            follow_redirects=False,
            trust_env=False,  # no env proxies (they would bypass pinning), no .netrc
            headers={"user-agent": USER_AGENT},
        )

    def __enter__(self) -> RunnerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    @contextmanager
    def start(
        self, target: StartTarget, body: Mapping[str, Any], *, deadline: float | None = None
    ) -> Iterator[Iterator[Frame]]:
        """Open one ``/start`` stream; iterate the frames inside the ``with`` block."""
        try:
            response, attempt = self._open(target, body, deadline)
        except (RunnerError, RunnerNoResponseError) as exc:
            _scrub(exc, target.secrets)
            raise
        frames = _frames(response, attempt)
        try:
            yield frames
        except (RunnerError, RunnerNoResponseError) as exc:
            _scrub(exc, target.secrets)
            raise
        finally:
            frames.close()
            _close_quietly(response)

    def _resolve(self, plan: _Plan, attempt: _Attempt) -> list[str]:
        if outbound.parse_ip(plan.host) is not None:
            return [plan.host]
        try:
            if self._resolver is not None:
                return list(self._resolver(plan.host, plan.port))
            return outbound.resolve_with_timeout(plan.host, plan.port, attempt.connect_timeout())
        except (OSError, UnicodeError) as exc:
            raise _dns_failed(plan, exc) from exc

    def _open(
        self, target: StartTarget, body: Mapping[str, Any], deadline: float | None
    ) -> tuple[httpx.Response, _Attempt]:
        if target.unresolved is not None:
            raise RunnerError(target.unresolved)
        plan = _plan(target)
        attempt = _Attempt(self.limits, deadline, target.secrets)
        attempt.connect_timeout()  # the caller's deadline may have passed already
        address = _address_or_raise(plan, self._resolve(plan, attempt), self._allow_loopback)
        logger.debug("starting a runner: pool=%s host=%s", target.pool.id, plan.host)
        try:
            request = _request(self._http, target, body, plan, address, attempt)
            response = self._http.send(request, stream=True)
        except RunnerError:
            raise
        except Exception as exc:
            kind = attempt.pre_body_deadline()[1]
            if isinstance(exc, httpx.ReadTimeout):
                attempt.timed_out(kind, exc)
            raise RunnerError(classify_exception(exc)) from exc
        try:
            verdict = _initial_checks(response)
            if verdict == "ok":
                return response, attempt
            if verdict == "redirect":
                raise _redirect_error(response)
            if verdict == "type":
                raise _content_type_error(response)
            text = redact_text(self._error_body(response, attempt), target.secrets)
            raise RunnerError(ServerlessHttpError(status_code=response.status_code, body=text))
        except BaseException:
            _close_quietly(response)
            raise

    def _error_body(self, response: httpx.Response, attempt: _Attempt) -> str:
        net = _deadline_stream(response)
        if net is not None:
            net.read_deadline = attempt.pre_body_deadline()[0]
        cap = self.limits.max_error_body_bytes
        data = bytearray()
        try:
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) >= cap:
                    break
        except Exception as exc:
            if not data:
                return _unreadable(exc)
        return _body_text(bytes(data[:cap]), response)  # the error model keeps 512 bytes


def _scrub(exc: RunnerError | RunnerNoResponseError, secrets: tuple[str, ...]) -> None:
    """Redact the pool's secrets from ``exc`` in place; drop a cause chain that quotes one.

    The boundary rule (docs/errors.md): nothing an endpoint or a transport says leaves this
    module with a header value or URL userinfo in it, not even in a logged traceback.
    """
    if not secrets:
        return
    if isinstance(exc, RunnerError):
        exc.error = redact_error(exc.error, secrets)
    else:
        exc.detail = redact_text(exc.detail, secrets)
        runner_id = redact_text(exc.reason.runner_id, secrets)
        if runner_id != exc.reason.runner_id:
            exc.reason = exc.reason.model_copy(update={"runner_id": runner_id})
            exc.args = (runner_id,)
    causes = list(_chain(exc))[1:]
    if any(contains_secret(f"{e!s} {e.args!r}", secrets) for e in causes):
        exc.__cause__ = None
        exc.__context__ = None
        exc.__suppress_context__ = True


def _close_quietly(response: httpx.Response) -> None:
    try:
        response.close()
    except Exception:  # a broken connection may fail to close; nothing is left to do
        logger.debug("closing a runner stream failed", exc_info=True)


async def _aclose_quietly(response: httpx.Response) -> None:
    try:
        await response.aclose()
    except Exception:
        logger.debug("closing a runner stream failed", exc_info=True)


def _default_allow_loopback(allow_loopback: bool | None) -> bool:
    if allow_loopback is not None:
        return allow_loopback
    from adapters.settings import in_lambda

    return not in_lambda()  # inside Lambda, loopback is the runtime API


# --- Async client --------------------------------------------------------------------------


async def _aframes(
    chunks: AsyncIterator[bytes], response: httpx.Response, attempt: _Attempt
) -> AsyncGenerator[Frame, None]:
    """The async twin of ``_frames``."""
    net = _deadline_stream(response)
    while not attempt.finished:
        when, kind = attempt.next_deadline()
        if net is not None:
            net.read_deadline = when
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            for frame in attempt.end_of_stream():
                yield frame
            return
        except Exception as exc:
            attempt.broken(exc, kind)
        for frame in attempt.feed(chunk):
            yield frame


async def _aclose_iterator(iterator: AsyncIterator[Any]) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        try:
            await closer()
        except Exception:
            logger.debug("closing a runner stream failed", exc_info=True)


class AsyncRunnerClient:
    """Async runner starts (asyncio or trio); many streams may run at once on one client."""

    def __init__(
        self,
        limits: StartLimits | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: outbound.Resolver | None = None,
        allow_loopback: bool | None = None,
    ) -> None:
        self.limits = limits or StartLimits()
        self._resolver = resolver
        self._allow_loopback = _default_allow_loopback(allow_loopback)
        self._http = httpx.AsyncClient(
            transport=transport
            or outbound.async_guarded_transport(allow_loopback=self._allow_loopback),
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": USER_AGENT},
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
    ) -> AsyncIterator[AsyncIterator[Frame]]:
        """Open one ``/start`` stream; iterate the frames inside the ``async with`` block."""
        try:
            response, attempt = await self._open(target, body, deadline)
        except (RunnerError, RunnerNoResponseError) as exc:
            _scrub(exc, target.secrets)
            raise
        chunks = response.aiter_bytes()
        frames = _aframes(chunks, response, attempt)
        try:
            yield frames
        except (RunnerError, RunnerNoResponseError) as exc:
            _scrub(exc, target.secrets)
            raise
        finally:
            await _aclose_iterator(frames)
            await _aclose_iterator(chunks)
            await _aclose_quietly(response)

    async def _resolve(self, plan: _Plan, attempt: _Attempt) -> list[str]:
        import anyio

        if outbound.parse_ip(plan.host) is not None:
            return [plan.host]
        try:
            if self._resolver is not None:
                return list(self._resolver(plan.host, plan.port))
            with anyio.fail_after(attempt.connect_timeout()):
                return await outbound.async_system_resolve(plan.host, plan.port)
        except (OSError, UnicodeError) as exc:  # TimeoutError is an OSError
            raise _dns_failed(plan, exc) from exc

    async def _open(
        self, target: StartTarget, body: Mapping[str, Any], deadline: float | None
    ) -> tuple[httpx.Response, _Attempt]:
        if target.unresolved is not None:
            raise RunnerError(target.unresolved)
        plan = _plan(target)
        attempt = _Attempt(self.limits, deadline, target.secrets)
        attempt.connect_timeout()
        address = _address_or_raise(plan, await self._resolve(plan, attempt), self._allow_loopback)
        logger.debug("starting a runner: pool=%s host=%s", target.pool.id, plan.host)
        try:
            request = _request(self._http, target, body, plan, address, attempt)
            response = await self._http.send(request, stream=True)
        except RunnerError:
            raise
        except Exception as exc:
            kind = attempt.pre_body_deadline()[1]
            if isinstance(exc, httpx.ReadTimeout):
                attempt.timed_out(kind, exc)
            raise RunnerError(classify_exception(exc)) from exc
        try:
            verdict = _initial_checks(response)
            if verdict == "ok":
                return response, attempt
            if verdict == "redirect":
                raise _redirect_error(response)
            if verdict == "type":
                raise _content_type_error(response)
            text = redact_text(await self._error_body(response, attempt), target.secrets)
            raise RunnerError(ServerlessHttpError(status_code=response.status_code, body=text))
        except BaseException:
            await _aclose_quietly(response)
            raise

    async def _error_body(self, response: httpx.Response, attempt: _Attempt) -> str:
        net = _deadline_stream(response)
        if net is not None:
            net.read_deadline = attempt.pre_body_deadline()[0]
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
                return _unreadable(exc)
        finally:
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()
        return _body_text(bytes(data[:cap]), response)  # the error model keeps 512 bytes


# --- Probes ----------------------------------------------------------------------------------


def probe(
    client: RunnerClient, target: StartTarget, *, deadline: float | None = None
) -> ProbeResult:
    """One probe start: success once ``init`` arrives; the stream is closed right after."""
    started = time.monotonic()
    try:
        with client.start(target, probe_body(), deadline=deadline) as frames:
            for frame in frames:
                if isinstance(frame, InitFrame):
                    return ProbeResult(True, frame.runner_id, time.monotonic() - started, None)
    except RunnerError as exc:
        return ProbeResult(False, None, None, exc.error)
    return ProbeResult(False, None, None, InternalError(message="stream ended without init"))


async def aprobe(
    client: AsyncRunnerClient, target: StartTarget, *, deadline: float | None = None
) -> ProbeResult:
    """The async twin of ``probe``."""
    started = time.monotonic()
    try:
        async with client.start(target, probe_body(), deadline=deadline) as frames:
            async for frame in frames:
                if isinstance(frame, InitFrame):
                    return ProbeResult(True, frame.runner_id, time.monotonic() - started, None)
    except RunnerError as exc:
        return ProbeResult(False, None, None, exc.error)
    return ProbeResult(False, None, None, InternalError(message="stream ended without init"))
