"""API Lambda (API Gateway REST proxy events): Powertools resolver with validation on.

``lambda_handler`` -> ``handle(event, context, deps())``; ``deps()`` is the composition root.
Every non-2xx answer is ``{"group","code","message","metadata"}`` (``core.api_errors``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import JsonValue

from adapters import observability, snapstart
from adapters.observability import Invocation
from core.api_errors import ApiError, ApiErrorBody
from functions.api import actors, messages, runner_configs
from functions.api.deps import ApiDeps
from functions.api.routing import take_pending_wait

TITLE = "runner-kit API"
VERSION = "1"

app = APIGatewayRestResolver(enable_validation=True)
for _routes in (runner_configs, actors, messages):
    app.include_router(_routes.router)

_served = threading.local()
"""The error code of the answer this thread is serving (``serve`` reports it with the answer)."""


def _error_response(exc: ApiError) -> Response[Any]:
    # Every error answer is built here: its code is known without reading the body back.
    _served.code = exc.code
    return Response(
        status_code=exc.status,
        content_type="application/json",
        body=exc.body.model_dump(),
        headers=exc.headers or None,
    )


@app.exception_handler(ApiError)  # type: ignore[untyped-decorator]
def _api_error(exc: ApiError) -> Response[Any]:
    return _error_response(exc)


def _answer(code: str, message: str, metadata: dict[str, JsonValue] | None = None) -> Response[Any]:
    return _error_response(ApiError(code, message, metadata=metadata))


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def _validation_error(exc: RequestValidationError) -> Response[Any]:
    # Never echo inputs back (a header value may be a secret); location, type and message only.
    errors: list[JsonValue] = [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "type": str(e.get("type", "")),
            "msg": str(e.get("msg", "")),
        }
        for e in exc.errors()
    ]
    if any(isinstance(e, dict) and e["type"] == "json_invalid" for e in errors):
        return _answer("malformed_body", "the request body is not valid JSON", {"errors": errors})
    return _answer(
        "invalid_request", "the request does not match the API schema", {"errors": errors}
    )


@app.exception_handler(RequestUnsupportedContentType)  # type: ignore[untyped-decorator]
def _unsupported(exc: RequestUnsupportedContentType) -> Response[Any]:
    return _answer("unsupported_media_type", "send the body as application/json")


@app.exception_handler([binascii.Error, UnicodeDecodeError])  # type: ignore[untyped-decorator]
def _undecodable(exc: Exception) -> Response[Any]:
    return _answer("malformed_body", "the request body is not valid base64 or UTF-8")


@app.not_found
def _not_found(exc: NotFoundError) -> Response[Any]:
    event = app.current_event
    return _answer(
        "route_not_found",
        f"no route {event.http_method} {event.path}",
        {"method": event.http_method, "path": event.path},
    )


MAX_JSON_DEPTH = 64
"""Deepest nesting of objects and arrays an API body may have (docs/api.md, Limits)."""

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON_MEDIA = re.compile(r"application/(?:[a-z0-9.+-]+\+)?json", re.IGNORECASE)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class _NonFinite(ValueError):
    pass


def _non_finite(text: str) -> Any:
    raise _NonFinite(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NonFinite(text)  # e.g. 1e400: overflows to infinity
    return value


def _header(event: dict[str, Any], name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if str(key).lower() == name and value is not None:
            return str(value)
    for key, values in (event.get("multiValueHeaders") or {}).items():
        if str(key).lower() == name and values:
            return str(values[0])
    return None


def _json_depth(text: str) -> int:
    """Deepest nesting of ``text`` (JSON), without recursion: brackets outside strings."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def screen_body(event: dict[str, Any]) -> Response[Any] | None:
    """The 4xx for a body the resolver must never see, or None.

    Runs before Powertools, which would accept form and multipart bodies (a multipart without a
    boundary raised), recurse without bound on deep nesting, and take ``NaN``/``Infinity``.
    """
    if str(event.get("httpMethod", "")).upper() not in _BODY_METHODS:
        return None
    raw = event.get("body")
    if raw is None or raw == "":
        return None
    content_type = _header(event, "content-type")
    media = (content_type or "application/json").partition(";")[0].strip()
    if not _JSON_MEDIA.fullmatch(media):
        return _answer(
            "unsupported_media_type",
            "send the body as application/json",
            {"content_type": media[:100]},
        )
    try:
        data = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw
        text = data.decode("utf-8") if isinstance(data, bytes) else str(data)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return _answer("malformed_body", "the request body is not valid base64 or UTF-8")
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        return _answer(
            "json_too_deep",
            f"the body nests {depth} levels deep; at most {MAX_JSON_DEPTH}",
            {"depth": depth, "max_depth": MAX_JSON_DEPTH},
        )
    try:
        json.loads(text, parse_constant=_non_finite, parse_float=_finite_float)
    except _NonFinite as exc:
        return _answer(
            "non_finite_number",
            f"JSON numbers must be finite (RFC 8259); got {str(exc)[:40]}",
            {"number": str(exc)[:40]},
        )
    except (ValueError, RecursionError):
        return _answer("malformed_body", "the request body is not valid JSON")
    return None


def _json_content_type(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with a JSON content type spelled as Powertools matches it (``application/json``,
    case-sensitive), so ``Application/JSON`` or ``+json`` types are not refused after the screen."""
    if str(event.get("httpMethod", "")).upper() not in _BODY_METHODS or not event.get("body"):
        return event
    content_type = _header(event, "content-type")
    if content_type is None or content_type.startswith("application/json"):
        return event
    event = dict(event)
    for key in ("headers", "multiValueHeaders"):
        original = event.get(key) or {}
        replaced = {k: v for k, v in original.items() if str(k).lower() != "content-type"}
        if original:
            value = "application/json"
            replaced["Content-Type"] = [value] if key == "multiValueHeaders" else value
        event[key] = replaced
    return event


def _error_proxy(response: Response[Any]) -> dict[str, Any]:
    body = response.body if isinstance(response.body, str) else json.dumps(response.body)
    return {
        "statusCode": response.status_code,
        "headers": {"Content-Type": "application/json"},
        "body": body,
        "isBase64Encoded": False,
    }


_RESOLVE_LOCK = threading.Lock()
"""Powertools keeps the current event on the class: resolve one request at a time per process
(one per Lambda anyway; ``runner-kit local`` serves threads). Gateway waits run outside it."""


@dataclass(frozen=True)
class Served:
    """One request's proxy answer and, if it is an error answer, its code."""

    answer: dict[str, Any]
    code: str | None = None


def handle(event: dict[str, Any], context: Any, deps: ApiDeps) -> dict[str, Any]:
    """Serve one API Gateway proxy event with ``deps`` (unit tests pass in-memory ones)."""
    return serve(event, context, deps).answer


def serve(event: dict[str, Any], context: Any, deps: ApiDeps) -> Served:
    """``handle``, with the answer's error code (for the summary and the gateway metrics)."""
    _served.code = None
    try:
        refused = screen_body(event)
        if refused is not None:
            return Served(_error_proxy(refused), _served.code)
        event = _json_content_type(event)
        with _RESOLVE_LOCK:
            take_pending_wait()  # nothing stale from an earlier failed request
            app.append_context(deps=deps)  # type: ignore[no-untyped-call]
            answer = app.resolve(event, context)
            wait = take_pending_wait()
        if wait is not None:
            try:
                response = wait(_remaining_s(context))
            except ApiError as exc:
                response = _error_response(exc)
            answer = _proxy_answer(response)
        return Served(answer, _served.code)
    except Exception:
        # A bug: log it, answer 500 in the API's shape (never a stack trace to the client).
        observability.get_logger(SERVICE).exception("unhandled error in the API")
        body = ApiErrorBody(
            group="server", code="server_error", message="internal error; see the logs"
        )
        return Served(
            {
                "statusCode": 500,
                "headers": {"Content-Type": "application/json"},
                "body": body.model_dump_json(),
                "isBase64Encoded": False,
            },
            body.code,
        )


def _remaining_s(context: Any) -> float | None:
    get_remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(get_remaining):
        return None
    try:
        return float(get_remaining()) / 1000.0
    except (TypeError, ValueError):
        return None


def _proxy_answer(response: Response[Any]) -> dict[str, Any]:
    """A REST proxy answer, shaped like the resolver's (``multiValueHeaders``)."""
    headers = {str(k): (v if isinstance(v, list) else [v]) for k, v in response.headers.items()}
    if response.content_type:
        headers.setdefault("Content-Type", [response.content_type])
    body = response.body
    if not isinstance(body, str):
        body = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return {
        "statusCode": response.status_code,
        "body": body,
        "isBase64Encoded": False,
        "multiValueHeaders": headers,
    }


@lru_cache(maxsize=1)
def deps() -> ApiDeps:
    """The composition root: settings, DynamoDB stores, the queue and the tracker (once)."""
    from adapters.clock import SYSTEM_CLOCK
    from adapters.sqs import SqsMessageQueue
    from adapters.stores import DynamoDBStores
    from core.ports import ActorExistsError
    from functions.api.url_check import make_url_check

    stores = DynamoDBStores.from_environment()
    settings = stores.settings
    return stores.fill(
        ApiDeps,
        queue=SqsMessageQueue(settings.actor_messages_queue_url),
        check_url=make_url_check(_resolve, allow_loopback=not settings.in_lambda),
        actor_exists_error=ActorExistsError,
        clock=SYSTEM_CLOCK,
        sleep=time.sleep,
        new_id=lambda: uuid.uuid4().hex,
    )


def _resolve(host: str, port: int) -> list[str]:
    """DNS for the save-time URL check, bounded (httpx and the guard load on first use)."""
    from adapters.runner.guard import resolve_with_timeout

    return resolve_with_timeout(host, port, 2.0)


_GATEWAY_METRICS = {
    "actor_runner_failed": "GatewayRunnerFailed",
    "actor_ready_timeout": "GatewayReadyTimeout",
}

SERVICE = "api"

_KEYS = re.compile(
    r"^/(?:actors/(?P<actor_id>[^/]+)(?:/messages/(?P<message_id>[^/]+))?"
    r"|runner-configs/(?P<namespace>[^/]+)/(?P<runner_name>[^/]+))"
)


def log_keys(event: dict[str, Any]) -> dict[str, str]:
    """``actor_id`` / ``message_id`` / ``pool`` of the request's path, for every log line."""
    match = _KEYS.match(str(event.get("path") or ""))
    if match is None:
        return {}
    found = {k: v for k, v in match.groupdict().items() if v}
    if "namespace" in found:
        found["pool"] = f"{found.pop('namespace')}/{found.pop('runner_name')}"
    return found


def summarize(event: dict[str, Any], served: Served, invocation: Invocation) -> None:
    """The invocation summary (method, path, status, error code) and the gateway's metrics."""
    status = served.answer.get("statusCode")
    invocation.summary.update(
        method=event.get("httpMethod"), path=event.get("path"), status_code=status, code=served.code
    )
    name = _GATEWAY_METRICS.get(served.code) if served.code is not None else None
    if name is not None:
        invocation.metric(name, 1)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    keys = log_keys(event) if isinstance(event, dict) else {}
    return observability.run(SERVICE, _invoke, event, context, keys=keys)


def _invoke(event: dict[str, Any], context: Any, invocation: Invocation) -> dict[str, Any]:
    served = serve(event, context, deps())
    summarize(event, served, invocation)
    return served.answer


# SnapStart: build deps() into the snapshot, rebuild clients after each restore.
snapstart.register(warm=deps, reset=deps.cache_clear)
