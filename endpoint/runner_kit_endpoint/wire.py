"""Protocol v1 on the wire: the ``/start`` request an endpoint receives, the events it sends.

Standard library only. Each ``message`` event's data is standard base64 of a UTF-8 JSON frame::

    {"v":1,"type":"init","runner_id":"..."}          first, at once
    {"type":"output","data":...}                    zero or more
    {"type":"done","output":...,"state":...}        last, or
    {"type":"error","code":"...","message":"...","retryable":false}
    event: ping                                     keep-alive while the actor works
    event: stopping                                 the instance is shutting down
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

PROTOCOL_VERSION: Final = 1
EVENT_STREAM: Final = "text/event-stream"
PING: Final = b"event: ping\ndata:\n\n"
STOPPING: Final = b"event: stopping\ndata:\n\n"
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""The largest ``/start`` body accepted; the kit's state and input fit DynamoDB (400 KB)."""

HEALTH_PATHS: Final = ("/", "/health")
"""``GET`` / ``HEAD`` paths that answer 200 (readiness checks, e.g. the Lambda Web Adapter's)."""
HEALTH_BODY: Final = json.dumps({"ok": True, "protocol_version": PROTOCOL_VERSION}).encode()

STREAM_HEADERS: Final = (
    ("content-type", EVENT_STREAM),
    ("cache-control", "no-store"),
    ("x-accel-buffering", "no"),  # ask proxies (nginx and friends) not to buffer the stream
)


class BadRequest(Exception):
    """A request the SDK answers with a 4xx JSON error instead of a stream."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> bytes:
        """The JSON error body."""
        return json.dumps({"code": self.code, "message": self.message}).encode()


@dataclass(frozen=True)
class StartRequest:
    """One ``POST {url}/start``: an execution, or a health probe."""

    probe: bool
    actor_id: str | None = None
    message_id: str | None = None
    state: Any = None
    input: Any = None
    lifespan_s: float | None = None
    """``x-runner-request-lifespan``: the kit gives up on the stream this long after sending."""
    pool: str | None = None
    total_slots: int | None = None


def _lifespan(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_start(body: bytes, headers: Mapping[str, str]) -> StartRequest:
    """The request in a ``/start`` body and its headers (names lower-case); or ``BadRequest``."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(413, "body_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, "invalid_body", f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(400, "invalid_body", "the body must be a JSON object")
    version = data.get("protocol_version")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise BadRequest(
            400,
            "unsupported_protocol_version",
            f"protocol_version {version!r}: this endpoint speaks {PROTOCOL_VERSION}",
        )
    lifespan = _lifespan(headers.get("x-runner-request-lifespan"))
    pool = headers.get("x-runner-pool")
    slots = _int(headers.get("x-runner-total-slots"))
    if data.get("probe") is True:
        return StartRequest(probe=True, lifespan_s=lifespan, pool=pool, total_slots=slots)
    actor_id, message_id = data.get("actor_id"), data.get("message_id")
    return StartRequest(
        probe=False,
        actor_id=actor_id if isinstance(actor_id, str) else None,
        message_id=message_id if isinstance(message_id, str) else None,
        state=data.get("state"),
        input=data.get("input"),
        lifespan_s=lifespan,
        pool=pool,
        total_slots=slots,
    )


def to_json(value: Any) -> bytes:
    """Strict, compact UTF-8 JSON (no NaN or Infinity: the kit refuses them)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def message_event(frame: Mapping[str, Any]) -> bytes:
    """One SSE ``message`` event carrying ``frame``: base64 of its JSON on one ``data:`` line."""
    return b"data: " + base64.b64encode(to_json(frame)) + b"\n\n"


def init_event(runner_id: str) -> bytes:
    """The first event of every stream."""
    return message_event({"v": PROTOCOL_VERSION, "type": "init", "runner_id": runner_id})


def output_event(data: Any) -> bytes:
    """An intermediate output (raises ``TypeError``/``ValueError`` if ``data`` is not JSON)."""
    return message_event({"type": "output", "data": data})


def done_event(output: Any, state: Any) -> bytes:
    """The last event of a successful run: its output and the actor's new state."""
    return message_event({"type": "done", "output": output, "state": state})


def error_event(code: str, message: str, retryable: bool) -> bytes:
    """The last event of a run whose actor code failed."""
    return message_event(
        {"type": "error", "code": code, "message": message, "retryable": retryable}
    )
