"""The pool error store port: apply one outcome atomically, read one or many pools."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from core.hysteresis import HysteresisPolicy, Outcome, PoolState
from core.models import PoolKey


@dataclass(frozen=True)
class ApplyResult:
    """What ``apply`` did: ``state`` is the post-image if ``written``, else the state it found."""

    state: PoolState
    written: bool


@runtime_checkable
class PoolErrorStore(Protocol):
    """Per-pool tracker state. ``apply`` is linearizable: it acts as ``observe`` on the state
    the store holds at that instant, in one atomic step, whatever any other writer does."""

    durable: bool
    """False for stores that lose their state with the process (refused inside Lambda)."""

    def apply(
        self,
        pool: PoolKey,
        outcome: Outcome,
        *,
        now: datetime,
        policy: HysteresisPolicy,
        hint: PoolState | None = None,
    ) -> ApplyResult:
        """Apply one outcome; a success while healthy writes nothing. ``hint`` (the caller's
        belief of the current state) only picks the first attempt: it never changes the result."""

    def retire(self, pool: PoolKey, *, now: datetime) -> None:
        """The pool's config was deleted: it becomes healthy with no error kept (the version
        still grows); a pool never written stays unwritten."""

    def get(self, pool: PoolKey) -> PoolState:
        """The pool's current state (``PoolState()`` if it was never written)."""

    def get_many(self, pools: Iterable[PoolKey]) -> dict[PoolKey, PoolState]:
        """The current state of every given pool, keyed by pool."""
