"""An in-memory pool error store: a dict behind a lock. Tests and one-process tools only."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime

from adapters.settings import in_lambda as _in_lambda
from core.exceptions import DurableStoreRequiredError
from core.hysteresis import HysteresisPolicy, Outcome, PoolState, observe
from core.models import PoolKey
from core.ports import ApplyResult


class InMemoryPoolErrorStore:
    """Exact by construction (``observe`` under a lock). Refused inside Lambda at construction,
    where its state would vanish between invocations and differ between concurrent ones."""

    durable = False

    def __init__(self, *, in_lambda: bool | None = None) -> None:
        if _in_lambda() if in_lambda is None else in_lambda:
            raise DurableStoreRequiredError("pool_error_store")
        self._states: dict[PoolKey, PoolState] = {}
        self._lock = threading.Lock()

    def apply(
        self,
        pool: PoolKey,
        outcome: Outcome,
        *,
        now: datetime,
        policy: HysteresisPolicy,
        hint: PoolState | None = None,
    ) -> ApplyResult:
        with self._lock:
            before = self._states.get(pool, PoolState())
            after = observe(before, outcome, now=now, policy=policy)
            if after is before:
                return ApplyResult(state=before, written=False)
            self._states[pool] = after
            return ApplyResult(state=after, written=True)

    def retire(self, pool: PoolKey, *, now: datetime) -> None:
        with self._lock:
            before = self._states.get(pool)
            if before is not None:
                self._states[pool] = PoolState(version=before.version + 1)

    def get(self, pool: PoolKey) -> PoolState:
        with self._lock:
            return self._states.get(pool, PoolState())

    def get_many(self, pools: Iterable[PoolKey]) -> dict[PoolKey, PoolState]:
        with self._lock:
            return {pool: self._states.get(pool, PoolState()) for pool in pools}
