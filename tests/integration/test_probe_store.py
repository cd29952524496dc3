"""One contract suite for every ProbeStore: DynamoDB (moto server over HTTP) and in-memory."""

from __future__ import annotations

import threading

import pytest

from adapters.dynamodb.probes import DynamoDBProbeStore
from adapters.memory.probes import InMemoryProbeStore
from core.models import PoolKey
from core.ports import ProbeState, ProbeStore
from tests.helpers.contract import BACKENDS, store_for

POOL = PoolKey(namespace="ns", runner_name="echo")
OTHER = PoolKey(namespace="ns", runner_name="other")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> ProbeStore:
    return store_for(request, "PoolProbesTable", DynamoDBProbeStore, InMemoryProbeStore)


def test_a_pool_never_failed_has_no_state_and_is_due(store: ProbeStore) -> None:
    assert store.get(POOL) is None
    assert store.claim(POOL, now=0.0, lease_s=1) == ProbeState(pool_id="ns/echo", next_probe_at=1)


def test_claim_record_reset(store: ProbeStore) -> None:
    claimed = store.claim(POOL, now=1000.0, lease_s=30)
    assert claimed == ProbeState(pool_id="ns/echo", failures=0, next_probe_at=1030.0)
    assert store.claim(POOL, now=1010.0, lease_s=30) is None  # the lease holds the round
    store.record_failure(POOL, failures=2, next_probe_at=1500.5, error_code="internal_error")
    assert store.get(POOL) == ProbeState(
        pool_id="ns/echo", failures=2, next_probe_at=1500.5, last_error_code="internal_error"
    )
    assert store.claim(POOL, now=1500.0, lease_s=30) is None  # not due yet
    again = store.claim(POOL, now=1500.5, lease_s=30)  # due exactly at next_probe_at
    # A claim moves only the time: the count and the last error stay for the next backoff.
    assert again == ProbeState(
        pool_id="ns/echo", failures=2, next_probe_at=1530.5, last_error_code="internal_error"
    )
    store.reset(POOL)
    assert store.get(POOL) is None
    assert store.claim(POOL, now=0.0, lease_s=1) is not None  # due at once after a reset


def test_pools_are_independent(store: ProbeStore) -> None:
    assert store.claim(POOL, now=100.0, lease_s=60) is not None
    assert store.claim(OTHER, now=100.0, lease_s=60) is not None
    store.reset(OTHER)
    assert store.get(POOL) is not None
    assert store.get(OTHER) is None


def test_failure_without_a_code_keeps_none(store: ProbeStore) -> None:
    store.record_failure(POOL, failures=1, next_probe_at=12.25, error_code=None)
    assert store.get(POOL) == ProbeState(pool_id="ns/echo", failures=1, next_probe_at=12.25)


def test_epoch_seconds_keep_their_precision(store: ProbeStore) -> None:
    # Epoch seconds with microseconds need 16 significant digits: a lossy number would let a
    # pool be claimed early or make a due pool look leased.
    at = 1_795_000_000.123456
    store.record_failure(POOL, failures=3, next_probe_at=at, error_code="x")
    state = store.get(POOL)
    assert state is not None and state.next_probe_at == at
    assert store.claim(POOL, now=at - 1e-6, lease_s=5) is None
    assert store.claim(POOL, now=at, lease_s=5) is not None


def test_reset_of_an_unknown_pool_is_a_no_op(store: ProbeStore) -> None:
    store.reset(POOL)
    assert store.get(POOL) is None


def test_claim_is_exclusive_under_concurrency(store: ProbeStore) -> None:
    wins: list[bool] = []
    barrier = threading.Barrier(6)

    def claim() -> None:
        barrier.wait()
        wins.append(store.claim(POOL, now=5000.0, lease_s=60) is not None)

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 5 + [True]
