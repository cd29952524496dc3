"""API Lambda (API Gateway REST proxy events): Powertools resolver with validation on.

``lambda_handler`` -> ``handle(event, context, deps())``; ``deps()`` is the composition root.
Every non-2xx answer is ``{"group","code","message","metadata"}`` (``core.api_errors``).
"""

from __future__ import annotations

import binascii
import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import JsonValue

from core.api_errors import API_ERRORS, ApiError, ApiErrorBody
from functions.api.routes import ApiDeps, router, take_pending_wait

logger = logging.getLogger(__name__)

TITLE = "runner-kit API"
VERSION = "1"

app = APIGatewayRestResolver(enable_validation=True)
app.include_router(router)


def _answer(code: str, message: str, metadata: dict[str, JsonValue] | None = None) -> Response[Any]:
    spec = API_ERRORS[code]
    body = ApiErrorBody(group=spec.group, code=code, message=message, metadata=metadata or {})
    return Response(
        status_code=spec.status, content_type="application/json", body=body.model_dump()
    )


@app.exception_handler(ApiError)  # type: ignore[untyped-decorator]
def _api_error(exc: ApiError) -> Response[Any]:
    return Response(
        status_code=exc.status,
        content_type="application/json",
        body=exc.body.model_dump(),
        headers=exc.headers or None,
    )


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


_RESOLVE_LOCK = threading.Lock()
"""Powertools keeps the current event on the class: resolve one request at a time per process
(one per Lambda anyway; ``runner-kit local`` serves threads). Gateway waits run outside it."""


def handle(event: dict[str, Any], context: Any, deps: ApiDeps) -> dict[str, Any]:
    """Serve one API Gateway proxy event with ``deps`` (unit tests pass in-memory ones)."""
    try:
        with _RESOLVE_LOCK:
            take_pending_wait()  # nothing stale from an earlier failed request
            app.append_context(deps=deps)  # type: ignore[no-untyped-call]
            answer = app.resolve(event, context)
            wait = take_pending_wait()
        if wait is None:
            return answer
        try:
            response = wait(_remaining_s(context))
        except ApiError as exc:
            response = _api_error(exc)
        return _proxy_answer(response)
    except Exception:
        # A bug: log it, answer 500 in the API's shape (never a stack trace to the client).
        logger.exception("unhandled error in the API")
        body = ApiErrorBody(
            group="server", code="server_error", message="internal error; see the logs"
        )
        return {
            "statusCode": 500,
            "headers": {"Content-Type": "application/json"},
            "body": body.model_dump_json(),
            "isBase64Encoded": False,
        }


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
    import boto3

    from adapters.actor_store import ActorExistsError, DynamoDBActorStore
    from adapters.message_store import DynamoDBMessageStore
    from adapters.probe_store import DynamoDBProbeStore
    from adapters.runner_config_store import DynamoDBRunnerConfigStore
    from adapters.settings import get_settings
    from adapters.sqs import SqsMessageQueue
    from adapters.tracker import build_tracker
    from functions.api.url_check import make_url_check

    settings = get_settings()
    dynamodb = boto3.client("dynamodb")
    return ApiDeps(
        settings=settings,
        runner_configs=DynamoDBRunnerConfigStore(settings.runner_configs_table, dynamodb),
        actors=DynamoDBActorStore(settings.actors_table, dynamodb),
        messages=DynamoDBMessageStore(settings.messages_table, dynamodb),
        queue=SqsMessageQueue(settings.actor_messages_queue_url),
        tracker=build_tracker(settings),
        probes=DynamoDBProbeStore(settings.pool_probes_table, dynamodb),
        check_url=make_url_check(_resolve, allow_loopback=not settings.in_lambda),
        actor_exists_error=ActorExistsError,
        now=lambda: datetime.now(UTC),
        clock=time.monotonic,
        sleep=time.sleep,
        new_id=lambda: uuid.uuid4().hex,
    )


def _resolve(host: str, port: int) -> list[str]:
    """DNS for the save-time URL check, bounded (httpx and the guard load on first use)."""
    from adapters.outbound import resolve_with_timeout

    return resolve_with_timeout(host, port, 2.0)


_GATEWAY_METRICS = {
    "actor_runner_failed": "GatewayRunnerFailed",
    "actor_ready_timeout": "GatewayReadyTimeout",
}


def _emit_gateway_metric(answer: dict[str, Any]) -> None:
    """EMF for the dashboard's "Gateway fail-fast answers" (only on the gateway's 503s)."""
    if answer.get("statusCode") != 503:
        return
    try:
        code = json.loads(answer.get("body") or "{}").get("code")
    except ValueError:
        return
    name = _GATEWAY_METRICS.get(code)
    if name is None:
        return
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace="RunnerKit", service="api")
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
    # With POWERTOOLS_METRICS_DISABLED, flush keeps the (class-wide) set: values would pile up.
    metrics.clear_metrics()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    answer = handle(event, context, deps())
    _emit_gateway_metric(answer)
    return answer
