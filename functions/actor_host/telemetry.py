"""What one invocation tells: counters and timings (EMF metrics at the end) and error events."""

from __future__ import annotations

from collections import Counter
from typing import Literal, TypeAlias

from pydantic import JsonValue

from adapters.observability import Invocation
from core.errors import ActorFailed, RunnerNoResponse, RunnerPoolError
from core.events import ErrorEvent, ErrorsChannel
from core.exceptions import KitError
from core.execution import CommitFailed, ReceiveLimitReached
from core.ports import Clock

AttemptError: TypeAlias = RunnerPoolError | RunnerNoResponse | ActorFailed | CommitFailed
"""Why one attempt of a message failed (what the policy decides on and the record keeps)."""

EventError: TypeAlias = AttemptError | ReceiveLimitReached | KitError
"""Anything the host reports as an error event."""

Scope = Literal["actor", "pool", "handler"]


class Telemetry:
    """Counters and timings of one invocation, and its error events (to ``channel``)."""

    def __init__(self, channel: ErrorsChannel, clock: Clock) -> None:
        self.channel = channel
        self._clock = clock
        self.outcomes: Counter[str] = Counter()
        self.error_codes: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.time_to_init_ms: list[float] = []

    def outcome(self, outcome: str) -> None:
        """Count one execution's outcome."""
        self.outcomes[outcome] += 1

    def count(self, name: str, value: int = 1) -> None:
        """Add to the counter metric ``name``."""
        self.counts[name] += value

    def event(
        self,
        error: EventError,
        *,
        scope: Scope,
        tags: dict[str, str],
        context: dict[str, JsonValue] | None = None,
    ) -> ErrorEvent:
        """Emit an error event now; returns it (the actor's error list keeps it too)."""
        event = ErrorEvent.of(error, scope=scope, now=self._clock.now(), tags=tags, context=context)
        self.channel.emit(event)
        return event


def add_metrics(invocation: Invocation, telemetry: Telemetry) -> None:
    """EMF: executions by outcome (dimension ``outcome``), failed attempts by error ``code``,
    and the invocation's counters."""
    for outcome, count in sorted(telemetry.outcomes.items()):
        invocation.metric("Executions", count, outcome=outcome)
    for code, count in sorted(telemetry.error_codes.items()):
        invocation.metric("ExecutionErrors", count, code=code)
    for name, count in sorted(telemetry.counts.items()):
        invocation.metric(name, count)
    for ms in telemetry.time_to_init_ms:
        invocation.metric("TimeToInit", ms, "Milliseconds")
