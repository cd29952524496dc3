"""Every way a start can fail, as a ``RunnerPoolError``: exceptions, answers, guard refusals.

Most specific first: the guard (``blocked_address``), TLS anywhere in the cause chain, then the
transport exceptions in ``TRANSPORT_REASONS`` order. Answers are judged by their status before
their content type (a 500 with ``text/event-stream`` is an HTTP error, not a stream).
httpx-sse's ``SSEError`` is not mapped: it is raised only by ``EventSource``'s content-type
check, which the kit does itself (``check_answer``), so it cannot reach this module.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Final, Literal

import httpx

from adapters.runner.guard import Blocked, ResolveFailed
from adapters.runner.transport import EVENT_STREAM, BlockedAddressError
from core.errors import InternalError, RunnerPoolError, ServerlessConnectionError
from core.exceptions import RunnerError, RunnerNoResponseError
from core.redaction import contains_secret, redact_error, redact_text


def _in_order(
    *runs: tuple[str, tuple[type[BaseException], ...]],
) -> tuple[tuple[type[BaseException], str], ...]:
    """``(exception, reason)`` rows from runs of exceptions that share a reason, order kept."""
    return tuple((kind, reason) for reason, kinds in runs for kind in kinds)


TRANSPORT_REASONS: Final = _in_order(
    # Most specific first: the first isinstance match wins. A test checks every httpx
    # exception is listed here or in INTERNAL_EXCEPTIONS.
    ("timeout", (httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout)),
    ("timeout", (httpx.PoolTimeout, httpx.TimeoutException)),
    ("connect", (httpx.ConnectError,)),
    ("read", (httpx.ReadError,)),
    ("connect", (httpx.WriteError,)),  # the request could not be delivered
    ("read", (httpx.CloseError, httpx.NetworkError)),
    ("protocol", (httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.ProtocolError)),
    ("connect", (httpx.ProxyError,)),
    ("invalid_url", (httpx.UnsupportedProtocol,)),
    ("read", (httpx.TransportError, httpx.RequestError)),
    ("protocol", (httpx.DecodingError,)),  # a broken content-encoding
    ("redirect", (httpx.TooManyRedirects,)),
    ("invalid_url", (httpx.InvalidURL,)),
    ("timeout", (TimeoutError,)),
    ("connect", (ConnectionRefusedError,)),
    ("read", (ConnectionError,)),
    ("connect", (OSError,)),
)
"""Transport exception -> ``serverless_connection_error`` reason."""

INTERNAL_EXCEPTIONS: Final[tuple[type[BaseException], ...]] = (
    httpx.StreamError,  # StreamConsumed, StreamClosed, ResponseNotRead, RequestNotRead
    httpx.HTTPStatusError,  # only from raise_for_status, which the kit does not call
    httpx.CookieConflict,
    httpx.HTTPError,  # the abstract base; every concrete transport failure is listed above
)
"""httpx exceptions that can only mean a bug in the kit: they become ``internal_error``."""

Verdict = Literal["ok", "status", "redirect", "type"]


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes and contexts, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify_exception(exc: BaseException) -> RunnerPoolError:
    """The ``RunnerPoolError`` for an exception raised while starting or reading a runner."""
    if isinstance(exc, RunnerError):
        return exc.error
    causes = list(chain(exc))
    if any(isinstance(e, BlockedAddressError) for e in causes):
        return ServerlessConnectionError(message=str(exc), reason="blocked_address")
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in causes):
        return ServerlessConnectionError(message=describe(exc), reason="tls")
    for kind, reason in TRANSPORT_REASONS:
        if isinstance(exc, kind):
            return ServerlessConnectionError(message=describe(exc), reason=reason)
    return InternalError(message=f"unexpected {describe(exc)}")


def guard_error(exc: Blocked | ResolveFailed | httpx.InvalidURL | ValueError) -> RunnerError:
    """A refused URL, refused address or failed DNS lookup, before anything was sent."""
    if isinstance(exc, Blocked):
        return connection_error(exc.message, exc.reason)
    if isinstance(exc, ResolveFailed):
        return connection_error(str(exc), "dns")
    return connection_error(f"invalid runner URL: {exc}", "invalid_url")


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception (the type alone when it says nothing)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def connection_error(message: str, reason: str) -> RunnerError:
    """A ``serverless_connection_error`` to raise."""
    return RunnerError(ServerlessConnectionError(message=message, reason=reason))


def media_type(content_type: str | None) -> str:
    """The media type of a ``content-type`` value, lower case, without parameters."""
    return (content_type or "").partition(";")[0].strip().lower()


def check_answer(response: httpx.Response) -> Verdict:
    """``ok``, or what is wrong with the answer: its status first, then its content type."""
    if response.status_code == 200:
        return "ok" if media_type(response.headers.get("content-type")) == EVENT_STREAM else "type"
    if 300 <= response.status_code < 400 and "location" in response.headers:
        return "redirect"
    return "status"


def answer_error(response: httpx.Response, verdict: Verdict) -> RunnerError:
    """The error of a redirect or a 200 that is not an event stream."""
    if verdict == "redirect":
        location = response.headers.get("location", "")
        shown = location.split("?", 1)[0] if location else "(no Location header)"
        return connection_error(
            f"HTTP {response.status_code} redirect to {shown} not followed "
            "(runner URLs must answer /start directly)",
            "redirect",
        )
    got = response.headers.get("content-type") or "(none)"
    return connection_error(
        f"HTTP 200 with content-type {got!r}, expected {EVENT_STREAM}", "content_type"
    )


def body_text(data: bytes, response: httpx.Response) -> str:
    """An error body as text, in the answer's charset (UTF-8 if unknown)."""
    encoding = response.charset_encoding or "utf-8"
    try:
        return data.decode(encoding, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def unreadable(exc: BaseException) -> str:
    """The placeholder for an error body that could not be read."""
    return f"<response body unreadable: {type(exc).__name__}>"


def scrub(exc: RunnerError | RunnerNoResponseError, secrets: tuple[str, ...]) -> None:
    """Redact the pool's secrets from ``exc`` in place; drop a cause chain that quotes one.

    The boundary rule (docs/errors.md): nothing an endpoint or a transport says leaves the
    runner client with a header value or URL userinfo in it, not even in a logged traceback.
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
    causes = list(chain(exc))[1:]
    if any(contains_secret(f"{e!s} {e.args!r}", secrets) for e in causes):
        exc.__cause__ = None
        exc.__context__ = None
        exc.__suppress_context__ = True
