"""adapters.tracker: the tracker over the in-memory store, with the fake clock (no sockets)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import pytest

from adapters import settings as settings_mod
from adapters.dynamodb.pool_errors import DynamoDBPoolErrorStore
from adapters.memory.pool_errors import InMemoryPoolErrorStore
from adapters.settings import Settings
from adapters.tracker import PoolErrorTracker, build_tracker
from core.errors import ServerlessConnectionError, ServerlessHttpError
from core.exceptions import DurableStoreRequiredError
from core.hysteresis import HysteresisPolicy, Outcome, PoolErrorStatus, PoolState
from core.models import PoolKey
from core.ports import ApplyResult, PoolErrorStore
from tests.helpers.clock import T0, FakeClock

POOL = PoolKey(namespace="ns", runner_name="echo")
OTHER = PoolKey(namespace="ns", runner_name="other")
E503 = ServerlessHttpError(status_code=503, body="down")


class CountingStore:
    """Wraps a store and counts calls by kind (the unit-level stand-in for request counts)."""

    durable = False

    def __init__(self, inner: PoolErrorStore | None = None) -> None:
        self.inner = inner or InMemoryPoolErrorStore(in_lambda=False)
        self.calls: Counter[str] = Counter()
        self.on_get: threading.Event | None = None
        self.release_get: threading.Event | None = None

    def apply(self, pool: PoolKey, outcome: Outcome, **kw: Any) -> ApplyResult:
        self.calls["apply"] += 1
        return self.inner.apply(pool, outcome, **kw)

    def get(self, pool: PoolKey) -> PoolState:
        self.calls["get"] += 1
        state = self.inner.get(pool)  # read now, answer late: a slow reply
        if self.on_get is not None and self.release_get is not None:
            self.on_get.set()
            assert self.release_get.wait(10)
        return state

    def get_many(self, pools: Iterable[PoolKey]) -> dict[PoolKey, PoolState]:
        pools = list(pools)
        self.calls["get_many"] += 1
        self.calls["get_many_pools"] += len(pools)
        return self.inner.get_many(pools)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def tracker(store: CountingStore, clock: FakeClock) -> PoolErrorTracker:
    return PoolErrorTracker(store, clock=clock)


def test_error_shows_with_its_episode(tracker: PoolErrorTracker, clock: FakeClock) -> None:
    tracker.report_error(POOL, E503)
    clock.advance(7)
    conn = ServerlessConnectionError(message="refused", reason="connect")
    tracker.report_error(POOL, conn)
    status = tracker.active_error(POOL)
    assert asdict(status) == asdict(
        PoolErrorStatus(
            pool=POOL,
            error=conn,
            first_seen=T0,
            last_seen=T0 + timedelta(seconds=7),
            count=2,
            consecutive_successes=0,
            stale=False,
        )
    )


def test_three_successes_clear(tracker: PoolErrorTracker) -> None:
    tracker.report_error(POOL, E503)
    for expected in (1, 2):
        tracker.report_success(POOL)
        status = tracker.active_error(POOL)
        assert status is not None
        assert status.consecutive_successes == expected
    tracker.report_success(POOL)
    assert tracker.active_error(POOL) is None


def test_success_while_healthy_costs_nothing_while_cached(
    tracker: PoolErrorTracker, store: CountingStore, clock: FakeClock
) -> None:
    tracker.report_success(POOL)  # unknown pool: one read, then known healthy
    assert store.calls == {"get": 1}
    for _ in range(100):
        clock.advance(0.004)
        tracker.report_success(POOL)
    assert store.calls == {"get": 1}  # 0.4 s later: still within the 500 ms view
    clock.advance(0.2)
    tracker.report_success(POOL)
    assert store.calls == {"get": 2}  # the view expired: one more read, still no write


def test_own_writes_refresh_the_view(
    tracker: PoolErrorTracker, store: CountingStore, clock: FakeClock
) -> None:
    tracker.report_error(POOL, E503)  # never reads before a failure
    assert store.calls == {"apply": 1}
    tracker.report_success(POOL)
    tracker.report_success(POOL)
    tracker.report_success(POOL)  # clears; the post-image says healthy
    tracker.report_success(POOL)  # healthy: no call at all
    assert tracker.active_error(POOL) is None
    assert store.calls == {"apply": 4}


@pytest.mark.parametrize(
    ("trace", "applies"),
    [
        pytest.param("SSSS", 0, id="healthy_stretch"),
        pytest.param("EEE", 3, id="burst"),
        pytest.param("ESSSSSS", 4, id="error_recover_then_healthy"),
        pytest.param("ESSESSSSS", 7, id="interrupted_recovery"),
    ],
)
def test_applies_equal_the_minimum(
    tracker: PoolErrorTracker, store: CountingStore, trace: str, applies: int
) -> None:
    tracker.report_error(OTHER, E503)  # warm up the pool's view so no read is needed
    tracker.report_success(POOL)
    store.calls.clear()
    for ch in trace:
        if ch == "E":
            tracker.report_error(POOL, E503)
        else:
            tracker.report_success(POOL)
    assert store.calls["apply"] == applies
    assert store.calls["get"] == 0


def test_stale_flag_after_stale_after(store: CountingStore, clock: FakeClock) -> None:
    tracker = PoolErrorTracker(store, stale_after_s=3600, clock=clock)
    tracker.report_error(POOL, E503)
    clock.advance(3600)
    status = tracker.active_error(POOL)
    assert status is not None
    assert not status.stale
    clock.advance(1)
    status = tracker.active_error(POOL)
    assert status is not None
    assert status.stale  # still active: only successes clear it


def test_active_errors_batches_only_expired_views(
    tracker: PoolErrorTracker, store: CountingStore, clock: FakeClock
) -> None:
    pools = [PoolKey(namespace="ns", runner_name=f"r{i}") for i in range(5)]
    tracker.report_error(pools[1], E503)
    tracker.report_error(pools[3], E503)
    store.calls.clear()
    found = tracker.active_errors([*pools, pools[0]])
    assert sorted(p.runner_name for p in found) == ["r1", "r3"]
    assert store.calls == {"get_many": 1, "get_many_pools": 3}  # r1, r3 known from writes
    assert tracker.active_errors(pools).keys() == found.keys()
    assert store.calls == {"get_many": 1, "get_many_pools": 3}  # all fresh now
    clock.advance(0.5)
    tracker.active_errors(pools)
    assert store.calls == {"get_many": 2, "get_many_pools": 8}


def test_another_process_error_shows_after_the_ttl(clock: FakeClock) -> None:
    shared = InMemoryPoolErrorStore(in_lambda=False)
    a = PoolErrorTracker(shared, clock=clock)
    b = PoolErrorTracker(shared, clock=clock)
    assert a.active_error(POOL) is None
    b.report_error(POOL, E503)
    assert a.active_error(POOL) is None  # a's view is at most 500 ms old, by design
    clock.advance(0.5)
    status = a.active_error(POOL)
    assert status is not None
    assert status.error == E503


def test_success_on_a_stale_view_is_counted_exactly(clock: FakeClock) -> None:
    shared = InMemoryPoolErrorStore(in_lambda=False)
    a = PoolErrorTracker(shared, clock=clock)
    b = PoolErrorTracker(shared, clock=clock)
    a.report_error(POOL, E503)
    a.report_success(POOL)
    a.report_success(POOL)
    b.report_error(POOL, E503)  # a still believes the next success clears
    a.report_success(POOL)
    state = shared.get(POOL)
    assert state.active_error is not None
    assert state.active_error.count == 2
    assert state.consecutive_successes == 1


def test_concurrent_readers_share_one_read(store: CountingStore, clock: FakeClock) -> None:
    tracker = PoolErrorTracker(store, clock=clock)
    store.on_get, store.release_get = threading.Event(), threading.Event()
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(tracker.active_error(POOL)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    assert store.on_get.wait(10)
    store.release_get.set()
    for t in threads:
        t.join()
    assert results == [None] * 8
    assert store.calls["get"] == 1


def test_a_slow_read_never_rolls_back_a_newer_write(
    tracker: PoolErrorTracker, store: CountingStore, clock: FakeClock
) -> None:
    store.on_get, store.release_get = threading.Event(), threading.Event()
    seen: list[PoolErrorStatus | None] = []
    reader = threading.Thread(target=lambda: seen.append(tracker.active_error(POOL)))
    reader.start()
    assert store.on_get.wait(10)  # the read saw a healthy pool and is still on its way back
    clock.advance(0.1)
    tracker.report_error(POOL, E503)  # meanwhile this process writes an error
    store.release_get.set()
    reader.join()
    assert seen[0] is not None  # the reader answers with the newer state it found cached
    assert tracker.active_error(POOL) is not None
    assert store.calls["get"] == 1


def test_threads_of_one_process_lose_nothing(store: CountingStore) -> None:
    # A threshold no run reaches, so every success is written and the totals are exact.
    tracker = PoolErrorTracker(store, policy=HysteresisPolicy(success_threshold=10_000))

    def hammer() -> None:
        for _ in range(200):
            tracker.report_error(POOL, E503)
            tracker.report_success(POOL)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = store.inner.get(POOL)
    assert state.active_error is not None
    assert state.active_error.count == 1600
    assert state.version == 3200


def test_negative_ttl_refused(store: CountingStore) -> None:
    with pytest.raises(ValueError, match="cache_ttl_s"):
        PoolErrorTracker(store, cache_ttl_s=-1)


# --- wiring ------------------------------------------------------------------------------


def test_build_tracker_from_settings_is_lazy() -> None:
    settings = Settings(
        pool_errors_table="t-errors",
        success_threshold=5,
        pool_error_cache_ms=250,
        pool_error_stale_after_s=60,
    )
    tracker = build_tracker(settings)
    assert isinstance(tracker.store, DynamoDBPoolErrorStore)
    assert tracker.store.table_name == "t-errors"
    assert tracker.store._client is None  # no boto3 client until the first request
    assert tracker.policy == HysteresisPolicy(success_threshold=5)
    assert tracker.cache_ttl_s == 0.25
    assert tracker.stale_after_s == 60


def test_build_tracker_refuses_memory_store_in_lambda() -> None:
    memory = InMemoryPoolErrorStore(in_lambda=False)
    assert build_tracker(Settings(), store=memory).store is memory
    with pytest.raises(DurableStoreRequiredError) as info:
        build_tracker(Settings(aws_lambda_function_name="fn"), store=memory)
    assert info.value.code == "durable_store_required:pool_error_store"


def test_memory_store_refuses_lambda_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DurableStoreRequiredError, match="pool_error_store"):
        InMemoryPoolErrorStore(in_lambda=True)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "runner-kit-actor-host")
    settings_mod.get_settings.cache_clear()
    try:
        with pytest.raises(DurableStoreRequiredError) as info:
            InMemoryPoolErrorStore()
        assert info.value.code == "durable_store_required:pool_error_store"
    finally:
        monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
        settings_mod.get_settings.cache_clear()
    assert InMemoryPoolErrorStore().durable is False


def test_importing_the_tracker_loads_no_aws_sdk() -> None:
    # Cold start: boto3 is imported when the first request is made, not at import.
    import subprocess
    import sys

    code = "import sys, adapters.tracker; print('boto3' in sys.modules, 'botocore' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
