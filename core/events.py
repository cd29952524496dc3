"""Telemetry path for errors: ``ErrorEvent`` values, the per-invocation errors channel, and the
capped ``extra.errors`` list persisted on an actor.

The control-flow path is ``core.exceptions.RunnerError``; this module never raises for bad
telemetry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from core.truncate import MAX_ERROR_BYTES, truncate_utf8

Scope = Literal["actor", "pool", "handler"]

ERRORS_KEY: Final = "errors"
"""Reserved key under an actor's ``extra`` where error events are persisted."""

DEFAULT_ERRORS_CAP: Final = 20
"""How many events ``extra.errors`` keeps per actor (newest kept)."""


class ErrorEvent(BaseModel):
    """One error, as telemetry: what failed (scope, code), when, and the context to debug it."""

    model_config = ConfigDict(frozen=True)

    scope: Scope
    code: str
    message: str
    timestamp: datetime
    tags: dict[str, str] = Field(default_factory=dict)
    context: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("message", mode="before")
    @classmethod
    def _cap_message(cls, value: Any) -> Any:
        return truncate_utf8(value, MAX_ERROR_BYTES) if isinstance(value, str) else value

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @classmethod
    def of(
        cls,
        error: Any,
        *,
        scope: Scope,
        now: datetime,
        tags: Mapping[str, str] | None = None,
        context: Mapping[str, JsonValue] | None = None,
    ) -> ErrorEvent:
        """Build an event from any error value or exception that has ``code`` (and ``summary``).

        A typed error's JSON goes under ``context["error"]`` so the event keeps every field.
        """
        code = str(getattr(error, "code", type(error).__name__))
        summary = getattr(error, "summary", None)
        message = summary if isinstance(summary, str) else str(error)
        ctx: dict[str, JsonValue] = dict(context or {})
        to_json = getattr(error, "to_json", None)
        if callable(to_json):
            ctx.setdefault("error", to_json())
        return cls(
            scope=scope,
            code=code,
            message=message,
            timestamp=now,
            tags=dict(tags or {}),
            context=ctx,
        )

    def to_json(self) -> dict[str, JsonValue]:
        """JSON-safe dict (timestamp as ISO 8601)."""
        return self.model_dump(mode="json")


class ErrorsChannel:
    """In-memory errors of one invocation: emitted as they happen, summarized once at the end."""

    def __init__(self) -> None:
        self._events: list[ErrorEvent] = []

    def emit(self, event: ErrorEvent) -> None:
        """Record one event."""
        self._events.append(event)

    @property
    def events(self) -> tuple[ErrorEvent, ...]:
        return tuple(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def clear(self) -> None:
        """Forget everything (a warm Lambda reuses the channel across invocations)."""
        self._events.clear()

    def summary(self) -> dict[str, JsonValue]:
        """One structured log line: totals by code and scope, and the newest event."""
        by_code = Counter(e.code for e in self._events)
        by_scope = Counter(e.scope for e in self._events)
        out: dict[str, JsonValue] = {
            "errors": len(self._events),
            "by_code": dict(sorted(by_code.items())),
            "by_scope": dict(sorted(by_scope.items())),
        }
        if self._events:
            last = self._events[-1]
            out["last"] = {
                "scope": last.scope,
                "code": last.code,
                "message": last.message,
                "timestamp": last.timestamp.isoformat(),
                "tags": dict(last.tags),
            }
        return out

    def render_text(self) -> str:
        """Pretty text for the CLI: one block per event, oldest first."""
        if not self._events:
            return "no errors"
        lines: list[str] = []
        for i, e in enumerate(self._events, 1):
            tags = " ".join(f"{k}={v}" for k, v in sorted(e.tags.items()))
            lines.append(f"{i:>3}. [{e.scope}] {e.code}  {e.timestamp:%H:%M:%S}  {tags}".rstrip())
            lines.append(f"     {e.message}")
        counts = ", ".join(
            f"{c} x{n}" for c, n in sorted(Counter(e.code for e in self._events).items())
        )
        lines.append(f"     total {len(self._events)}: {counts}")
        return "\n".join(lines)


def append_errors(
    extra: Mapping[str, Any] | None,
    events: Iterable[ErrorEvent],
    *,
    cap: int = DEFAULT_ERRORS_CAP,
) -> dict[str, Any]:
    """Return a copy of ``extra`` with ``events`` appended under ``extra["errors"]``.

    Shape: ``{"events": [...oldest..newest], "dropped": n}``; only the newest ``cap`` events are
    kept and ``dropped`` counts every event ever pushed out. A malformed existing value is
    replaced rather than raising (telemetry must never break a commit), and counted as dropped.
    """
    out = dict(extra or {})
    current = out.get(ERRORS_KEY)
    kept: list[Any] = []
    dropped = 0
    if isinstance(current, Mapping):
        raw_events = current.get("events")
        raw_dropped = current.get("dropped", 0)
        if isinstance(raw_events, list):
            kept = list(raw_events)
        if isinstance(raw_dropped, int) and not isinstance(raw_dropped, bool) and raw_dropped > 0:
            dropped = raw_dropped
    elif current is not None:
        dropped = 1
    kept.extend(e.to_json() for e in events)
    cap = max(cap, 0)
    if len(kept) > cap:
        dropped += len(kept) - cap
        kept = kept[len(kept) - cap :]
    out[ERRORS_KEY] = {"events": kept, "dropped": dropped}
    return out


def read_errors(extra: Mapping[str, Any] | None) -> tuple[list[ErrorEvent], int]:
    """Parse ``extra.errors`` back into events (skipping malformed ones) and the dropped count."""
    current = (extra or {}).get(ERRORS_KEY)
    if not isinstance(current, Mapping):
        return [], 0
    events: list[ErrorEvent] = []
    for raw in current.get("events") or []:
        try:
            events.append(ErrorEvent.model_validate(raw))
        except ValueError:
            continue
    dropped = current.get("dropped", 0)
    return events, dropped if isinstance(dropped, int) else 0
