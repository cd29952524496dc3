"""The pool error tracker: report outcomes, read active errors, with as few requests as possible.

Writes: a failure is one ``UpdateItem``; a success is one ``UpdateItem`` only while an error is
active. Whether a pool is healthy is known without a read per success: the tracker keeps each
pool's state from its own writes' post-images and from reads, and trusts it for
``cache_ttl_s`` (500 ms by default). When that view is older, a success first reads the pool
(one ``GetItem``; threads of one process share it), so reads stay at most one per pool per TTL.

The one thing the cache can cost: a success reported within the TTL of a view that said
"healthy", while another process has just written an error, is not counted. Under contention
that is most of them (docs/tracker.md, measured), so a clear comes up to about one TTL later;
it never erases or hides an error (errors are always written), and every write that does
happen is exact (see ``adapters.dynamodb.pool_errors``).

Sync (boto3) and thread-safe; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from adapters.clock import SYSTEM_CLOCK
from adapters.dynamodb.pool_errors import DynamoDBPoolErrorStore
from adapters.settings import Settings
from core.errors import RunnerPoolError
from core.exceptions import DurableStoreRequiredError
from core.hysteresis import (
    DEFAULT_POLICY,
    Failure,
    HysteresisPolicy,
    Outcome,
    PoolErrorStatus,
    PoolState,
    Success,
)
from core.models import PoolKey
from core.ports import Clock, PoolErrorStore


@dataclass(frozen=True)
class _Entry:
    state: PoolState
    as_of: float  # monotonic time at which the store was known to hold `state` (or newer)


class PoolErrorTracker:
    """Per-pool active error with hysteresis over a ``PoolErrorStore``, with a short cache."""

    def __init__(
        self,
        store: PoolErrorStore,
        *,
        policy: HysteresisPolicy = DEFAULT_POLICY,
        cache_ttl_s: float = 0.5,
        stale_after_s: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if cache_ttl_s < 0:
            raise ValueError("cache_ttl_s must be >= 0")
        self.store = store
        self.policy = policy
        self.cache_ttl_s = cache_ttl_s
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[PoolKey, _Entry] = {}
        self._read_locks: dict[PoolKey, threading.Lock] = {}

    # --- reporting -----------------------------------------------------------------------

    def report(self, pool: PoolKey, outcome: Outcome) -> None:
        """Report one runner start outcome."""
        if isinstance(outcome, Failure):
            self.report_error(pool, outcome.error)
        else:
            self.report_success(pool)

    def report_error(self, pool: PoolKey, error: RunnerPoolError) -> None:
        """A runner start failed: always one write (sets the error, bumps count, resets the
        counter). Never reads: the last known state, however old, only picks the branch."""
        with self._lock:
            entry = self._cache.get(pool)
        started = self._clock.monotonic()
        result = self.store.apply(
            pool,
            Failure(error),
            now=self._clock.now(),
            policy=self.policy,
            hint=entry.state if entry is not None else None,
        )
        self._remember(pool, result.state, started)

    def report_success(self, pool: PoolKey) -> None:
        """A runner started (``init`` arrived): a write only while an error is active."""
        state = self._current(pool)
        if state.healthy:
            return
        started = self._clock.monotonic()
        result = self.store.apply(
            pool, Success(), now=self._clock.now(), policy=self.policy, hint=state
        )
        self._remember(pool, result.state, started)

    # --- reading -------------------------------------------------------------------------

    def active_error(self, pool: PoolKey) -> PoolErrorStatus | None:
        """The pool's active error, or ``None`` while healthy."""
        return PoolErrorStatus.of(
            pool, self._current(pool), now=self._clock.now(), stale_after_s=self.stale_after_s
        )

    def active_errors(self, pools: Iterable[PoolKey]) -> dict[PoolKey, PoolErrorStatus]:
        """The pools among ``pools`` that have an active error: one ``BatchGetItem`` per 100
        pools whose cached view is older than the TTL."""
        states: dict[PoolKey, PoolState] = {}
        missing: list[PoolKey] = []
        for pool in dict.fromkeys(pools):
            entry = self._fresh(pool)
            if entry is None:
                missing.append(pool)
            else:
                states[pool] = entry.state
        if missing:
            started = self._clock.monotonic()
            for pool, state in self.store.get_many(missing).items():
                states[pool] = self._remember(pool, state, started)
        now = self._clock.now()
        statuses = {
            pool: PoolErrorStatus.of(pool, state, now=now, stale_after_s=self.stale_after_s)
            for pool, state in states.items()
        }
        return {pool: status for pool, status in statuses.items() if status is not None}

    def retire(self, pool: PoolKey) -> None:
        """Forget the pool's error for good (its runner config was deleted or re-created)."""
        self.store.retire(pool, now=self._clock.now())
        with self._lock:
            self._cache.pop(pool, None)  # the next call reads the store

    # --- cache ---------------------------------------------------------------------------

    def _fresh(self, pool: PoolKey) -> _Entry | None:
        with self._lock:
            entry = self._cache.get(pool)
        if entry is not None and self._clock.monotonic() - entry.as_of < self.cache_ttl_s:
            return entry
        return None

    def _current(self, pool: PoolKey) -> PoolState:
        entry = self._fresh(pool)
        if entry is not None:
            return entry.state
        with self._lock:
            read_lock = self._read_locks.setdefault(pool, threading.Lock())
        # Single flight: threads that find the view old wait for one read instead of each
        # sending their own.
        with read_lock:
            entry = self._fresh(pool)
            if entry is not None:
                return entry.state
            started = self._clock.monotonic()
            return self._remember(pool, self.store.get(pool), started)

    def _remember(self, pool: PoolKey, state: PoolState, started: float) -> PoolState:
        """Keep ``state`` (learned by a request sent at ``started``) unless the cache already
        holds something newer: a higher version learned after this request was sent."""
        with self._lock:
            entry = self._cache.get(pool)
            if entry is None or state.version >= entry.state.version or entry.as_of < started:
                self._cache[pool] = _Entry(state, started)
                return state
            return entry.state


def build_tracker(
    settings: Settings, *, clock: Clock = SYSTEM_CLOCK, store: PoolErrorStore | None = None
) -> PoolErrorTracker:
    """The tracker for a function's ``deps()``: DynamoDB unless a store is given; an in-memory
    store inside Lambda raises ``durable_store_required:pool_error_store``."""
    if store is None:
        store = DynamoDBPoolErrorStore(settings.pool_errors_table)
    elif settings.in_lambda and not getattr(store, "durable", True):
        raise DurableStoreRequiredError("pool_error_store")
    return PoolErrorTracker(
        store,
        policy=HysteresisPolicy(success_threshold=settings.success_threshold),
        cache_ttl_s=settings.pool_error_cache_ms / 1000,
        stale_after_s=settings.pool_error_stale_after_s,
        clock=clock,
    )
