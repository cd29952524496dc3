"""Many writers, one pool: every write's post-image, sorted by version, replays through observe.

8 threads x 200 random outcomes against a moto server process over HTTP. Threads share
trackers in pairs (threads of one Lambda) and trackers share nothing (separate Lambdas).

moto's ``UpdateItem`` is not atomic across its request threads: it reads the item, checks the
condition and applies the update as separate Python steps, so two concurrent requests can both
apply to the same old item (seen here as two post-images with the same version). DynamoDB
applies each request to an item atomically. The session's moto server (infra/moto_server.py)
therefore runs moto with one lock around each DynamoDB request, so this checks our protocol
rather than moto's threading.
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
import pytest

from adapters.dynamodb.pool_errors import DynamoDBPoolErrorStore
from adapters.tracker import PoolErrorTracker
from core.errors import ServerlessConnectionError, ServerlessHttpError
from core.hysteresis import Failure, HysteresisPolicy, Outcome, PoolState, Success, observe
from core.models import PoolKey
from core.ports import ApplyResult, PoolErrorStore
from infra.moto_server import MotoServer
from infra.template import create_tables

THREADS = 8
OUTCOMES_PER_THREAD = 200
TRACKERS = 4
POLICY = HysteresisPolicy(success_threshold=3)


@dataclass(frozen=True)
class Write:
    outcome: Outcome
    now: datetime
    post: PoolState


class RecordingStore:
    """Delegates to a real store and keeps every write (outcome, now, post-image)."""

    durable = True

    def __init__(self, inner: PoolErrorStore) -> None:
        self.inner = inner
        self.writes: list[Write] = []
        self.failures_reported = 0
        self._lock = threading.Lock()

    def apply(self, pool: PoolKey, outcome: Outcome, **kw: Any) -> ApplyResult:
        result = self.inner.apply(pool, outcome, **kw)
        with self._lock:
            self.failures_reported += isinstance(outcome, Failure)
            if result.written:
                self.writes.append(Write(outcome, kw["now"], result.state))
        return result

    def get(self, pool: PoolKey) -> PoolState:
        return self.inner.get(pool)

    def get_many(self, pools: Any) -> dict[PoolKey, PoolState]:
        return self.inner.get_many(pools)


def _client(server: MotoServer) -> Any:
    # Credentials come from the environment the moto_server fixture set.
    return boto3.client("dynamodb", endpoint_url=server.url, region_name="us-east-1")


def _outcome(rng: random.Random, thread: int, n: int) -> Outcome:
    roll = rng.random()
    if roll < 0.2:
        return Failure(ServerlessHttpError(status_code=500 + thread, body=f"t{thread}-{n}"))
    if roll < 0.3:
        return Failure(ServerlessConnectionError(message=f"t{thread}-{n}", reason="timeout"))
    return Success()


# One run (~15 s on 2 cores) in the suite; TRACKER_STRESS_RUNS=N runs N seeds with and
# without the cache, to look for rare interleavings.
_RUNS = int(os.environ.get("TRACKER_STRESS_RUNS", "0"))
_CASES = [pytest.param(1, 0.05, id="seed_1-cache_50ms")] + [
    pytest.param(seed, ttl, id=f"seed_{seed}-{name}")
    for seed in range(2, 2 + _RUNS)
    for ttl, name in ((0.0, "no_cache"), (0.05, "cache_50ms"))
]


@pytest.mark.parametrize(("seed", "cache_ttl_s"), _CASES)
def test_concurrent_reports_replay_exactly(
    moto_server: MotoServer, seed: int, cache_ttl_s: float
) -> None:
    pool = PoolKey(namespace="ns", runner_name="contended")
    table = f"pool-errors-{seed}-{int(cache_ttl_s * 1000)}"
    create_tables(_client(moto_server), {"PoolErrorsTable": table})
    # One client per tracker, made here: boto3's default session is not thread-safe.
    recorders = [
        RecordingStore(DynamoDBPoolErrorStore(table, client=_client(moto_server)))
        for _ in range(TRACKERS)
    ]
    trackers = [PoolErrorTracker(r, policy=POLICY, cache_ttl_s=cache_ttl_s) for r in recorders]
    start = threading.Barrier(THREADS)
    crashes: list[BaseException] = []

    def run(thread: int) -> None:
        rng = random.Random(seed * 1000 + thread)
        tracker = trackers[thread % TRACKERS]
        start.wait()
        try:
            for n in range(OUTCOMES_PER_THREAD):
                tracker.report(pool, _outcome(rng, thread, n))
        except BaseException as exc:
            crashes.append(exc)
            raise

    workers = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert crashes == []

    writes = sorted((w for r in recorders for w in r.writes), key=lambda w: w.post.version)
    failures = sum(r.failures_reported for r in recorders)
    # Every failure was written: no error is ever lost.
    assert sum(isinstance(w.outcome, Failure) for w in writes) == failures > 0
    # Versions 1..N, no gap, no duplicate: each write applied to exactly one predecessor.
    versions = [w.post.version for w in writes]
    first_bad = next((i for i, v in enumerate(versions) if v != i + 1), None)
    assert first_bad is None, f"version {first_bad + 1} missing or repeated: {versions[:40]}"
    state = PoolState()
    for w in writes:
        expected = observe(state, w.outcome, now=w.now, policy=POLICY)
        assert w.post == expected, f"version {w.post.version} does not follow by observe"
        state = expected
    assert DynamoDBPoolErrorStore(table, client=_client(moto_server)).get(pool) == state
    # Some successes were counted and some episodes cleared, or the test proved little.
    assert any(isinstance(w.outcome, Success) for w in writes)
    assert any(w.post.healthy for w in writes)
