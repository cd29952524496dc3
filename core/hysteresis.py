"""Per-pool error hysteresis as a pure state machine: ``observe(state, outcome) -> state``.

An error sets the pool's active error (a new episode after a clear gets a new ``first_seen``),
bumps ``count`` and resets the success counter. A success while an error is active increments the
counter and clears the error when it reaches ``policy.success_threshold``. A success while healthy
changes nothing (same object back, same ``version``), which is why it never costs a write.

Every change bumps ``version`` by one: the DynamoDB store does the same in one conditional
``UpdateItem``, so a sequence of post-images sorted by version can be replayed through ``observe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Self, TypeAlias

from core.errors import RunnerPoolError
from core.models import PoolKey


@dataclass(frozen=True)
class HysteresisPolicy:
    """How many consecutive successes clear an active error."""

    success_threshold: int = 3

    def __post_init__(self) -> None:
        if self.success_threshold < 1:
            raise ValueError("success_threshold must be >= 1")


@dataclass(frozen=True)
class ActiveError:
    """The error a pool currently shows, with the span and size of its episode."""

    error: RunnerPoolError
    first_seen: datetime
    last_seen: datetime
    count: int


@dataclass(frozen=True)
class PoolState:
    """A pool's tracker state; ``version`` counts the writes that made it (0: never written)."""

    active_error: ActiveError | None = None
    consecutive_successes: int = 0
    version: int = 0

    @property
    def healthy(self) -> bool:
        return self.active_error is None


@dataclass(frozen=True)
class Success:
    """A runner started: its ``init`` frame arrived."""


@dataclass(frozen=True)
class Failure:
    """A runner start failed with a classified pool error."""

    error: RunnerPoolError


Outcome: TypeAlias = Success | Failure

DEFAULT_POLICY = HysteresisPolicy()


def observe(
    state: PoolState,
    outcome: Outcome,
    *,
    now: datetime,
    policy: HysteresisPolicy = DEFAULT_POLICY,
) -> PoolState:
    """The state after ``outcome``; ``state`` itself (unchanged) for a success while healthy."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if isinstance(outcome, Failure):
        prev = state.active_error
        active = ActiveError(
            error=outcome.error,
            first_seen=now if prev is None else prev.first_seen,
            last_seen=now,
            count=1 if prev is None else prev.count + 1,
        )
        return PoolState(active_error=active, consecutive_successes=0, version=state.version + 1)
    if state.active_error is None:
        return state
    successes = state.consecutive_successes + 1
    if successes >= policy.success_threshold:
        return PoolState(active_error=None, consecutive_successes=0, version=state.version + 1)
    return PoolState(
        active_error=state.active_error,
        consecutive_successes=successes,
        version=state.version + 1,
    )


def changes(state: PoolState, outcome: Outcome) -> bool:
    """True if ``outcome`` changes ``state`` (needs a write): any failure, or a success while an
    error is active."""
    return isinstance(outcome, Failure) or state.active_error is not None


@dataclass(frozen=True)
class PoolErrorStatus:
    """A pool's active error as the tracker reports it (the API renders its own views of it)."""

    pool: PoolKey
    error: RunnerPoolError
    first_seen: datetime
    last_seen: datetime
    count: int
    consecutive_successes: int
    stale: bool
    """No failure for longer than the tracker's ``stale_after_s`` (still active: only
    successes clear an error)."""

    @classmethod
    def of(
        cls, pool: PoolKey, state: PoolState, *, now: datetime, stale_after_s: float | None
    ) -> Self | None:
        """The status of ``state``; ``None`` while the pool is healthy."""
        active = state.active_error
        if active is None:
            return None
        age_s = (now - active.last_seen).total_seconds()
        return cls(
            pool=pool,
            error=active.error,
            first_seen=active.first_seen,
            last_seen=active.last_seen,
            count=active.count,
            consecutive_successes=state.consecutive_successes,
            stale=stale_after_s is not None and age_s > stale_after_s,
        )
