"""One contract suite for every PoolErrorStore: DynamoDB (moto server over HTTP) and in-memory."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import partial

import pytest

from adapters.dynamodb.pool_errors import DynamoDBPoolErrorStore
from adapters.memory.pool_errors import InMemoryPoolErrorStore
from core.errors import (
    OtherPoolError,
    ServerlessConnectionError,
    ServerlessHttpError,
    decode_pool_error,
)
from core.hysteresis import ActiveError, Failure, HysteresisPolicy, PoolState, Success, observe
from core.models import PoolKey
from core.ports import PoolErrorStore
from tests.helpers.clock import T0
from tests.helpers.contract import BACKENDS, store_for

POLICY = HysteresisPolicy()
POOL = PoolKey(namespace="ns", runner_name="echo")
E503 = ServerlessHttpError(status_code=503, body="down")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> PoolErrorStore:
    memory = partial(InMemoryPoolErrorStore, in_lambda=False)
    return store_for(request, "PoolErrorsTable", DynamoDBPoolErrorStore, memory)


def at(i: int) -> datetime:
    return T0 + timedelta(seconds=i)


def outcome_of(ch: str, i: int) -> Failure | Success:
    return Failure(ServerlessHttpError(status_code=500 + i)) if ch == "E" else Success()


def test_never_written_pool_is_healthy(store: PoolErrorStore) -> None:
    assert store.get(POOL) == PoolState()
    assert store.get_many([POOL]) == {POOL: PoolState()}


def test_failure_opens_an_episode(store: PoolErrorStore) -> None:
    result = store.apply(POOL, Failure(E503), now=T0, policy=POLICY)
    expected = PoolState(ActiveError(E503, T0, T0, 1), 0, 1)
    assert result.written
    assert result.state == expected
    assert store.get(POOL) == expected


def test_success_while_healthy_writes_nothing(store: PoolErrorStore) -> None:
    result = store.apply(POOL, Success(), now=T0, policy=POLICY)
    assert not result.written
    assert result.state == PoolState()
    assert store.get(POOL) == PoolState()


TRACES = [
    pytest.param("EESSS", 3, id="error_then_recover"),
    pytest.param("ESSES", 3, id="error_interrupts_recovery"),
    pytest.param("ESSSESSSS", 3, id="two_episodes"),
    pytest.param("SSESSSSS", 3, id="healthy_successes_around_episode"),
    pytest.param("ESES", 1, id="threshold_one"),
    pytest.param("EESSSSSE", 5, id="threshold_five"),
]


@pytest.mark.parametrize(("trace", "threshold"), TRACES)
def test_each_apply_is_observe(store: PoolErrorStore, trace: str, threshold: int) -> None:
    policy = HysteresisPolicy(success_threshold=threshold)
    expected = PoolState()
    for i, ch in enumerate(trace):
        outcome = outcome_of(ch, i)
        after = observe(expected, outcome, now=at(i), policy=policy)
        result = store.apply(POOL, outcome, now=at(i), policy=policy)
        assert result.state == after, f"step {i} ({ch})"
        assert result.written is (after is not expected)
        expected = after
    assert store.get(POOL) == expected


def test_new_episode_after_clear_gets_new_first_seen(store: PoolErrorStore) -> None:
    for i, ch in enumerate("EESSSE"):
        store.apply(POOL, outcome_of(ch, i), now=at(i), policy=POLICY)
    state = store.get(POOL)
    assert state.active_error is not None
    assert state.active_error.first_seen == at(5)
    assert state.active_error.count == 1
    assert state.version == 6


def test_clear_never_erases_an_error_that_arrived_in_between(store: PoolErrorStore) -> None:
    # This caller saw two successes after an error, so its next success would clear...
    for i, ch in enumerate("ESS"):
        store.apply(POOL, outcome_of(ch, i), now=at(i), policy=POLICY)
    belief = store.get(POOL)
    assert belief.consecutive_successes == 2
    # ...but another writer's error lands first.
    store.apply(POOL, Failure(E503), now=at(3), policy=POLICY)
    result = store.apply(POOL, Success(), now=at(4), policy=POLICY, hint=belief)
    assert result.written
    assert result.state.active_error == ActiveError(E503, at(0), at(3), 2)
    assert result.state.consecutive_successes == 1
    assert result.state.version == 5


@pytest.mark.parametrize(
    ("hint_trace", "real_trace", "written"),
    [
        pytest.param("", "E", True, id="hint_healthy_but_active"),
        pytest.param("E", "ESSS", False, id="hint_active_but_cleared"),
        pytest.param("E", "ES", True, id="hint_counter_behind"),
        pytest.param("ESS", "E", True, id="hint_counter_ahead"),
    ],
)
def test_hint_never_changes_the_result(
    store: PoolErrorStore, hint_trace: str, real_trace: str, written: bool
) -> None:
    hint = PoolState()
    for i, ch in enumerate(hint_trace):
        hint = observe(hint, outcome_of(ch, i), now=at(i), policy=POLICY)
    for i, ch in enumerate(real_trace):
        store.apply(POOL, outcome_of(ch, i), now=at(i), policy=POLICY)
    before = store.get(POOL)
    result = store.apply(POOL, Success(), now=at(50), policy=POLICY, hint=hint)
    assert result.written is written
    assert result.state == observe(before, Success(), now=at(50), policy=POLICY)
    assert store.get(POOL) == result.state


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ServerlessConnectionError(message="refused", reason="connect"), id="known"),
        pytest.param(
            decode_pool_error({"code": "future_thing", "z": 1, "a": [1, {"b": None}]}),
            id="unknown_code",
        ),
        pytest.param(ServerlessHttpError(status_code=500, body="é" * 400), id="long_utf8_body"),
    ],
)
def test_error_round_trips(store: PoolErrorStore, error: ServerlessHttpError) -> None:
    store.apply(POOL, Failure(error), now=T0, policy=POLICY)
    active = store.get(POOL).active_error
    assert active is not None
    assert active.error == error
    assert type(active.error) is type(error)
    if isinstance(error, OtherPoolError):
        assert list(active.error.to_json()) == ["code", "z", "a"]


def test_times_keep_the_instant(store: PoolErrorStore) -> None:
    now = datetime(2026, 11, 23, 14, 30, 1, 123456, tzinfo=timezone(timedelta(hours=2)))
    store.apply(POOL, Failure(E503), now=now, policy=POLICY)
    active = store.get(POOL).active_error
    assert active is not None
    assert active.first_seen == now
    assert active.last_seen == now


def test_get_many_mixes_states_and_dedupes(store: PoolErrorStore) -> None:
    pools = [PoolKey(namespace="ns", runner_name=f"r{i:03d}") for i in range(250)]
    for i, pool in enumerate(pools):
        if i % 3 == 0:
            store.apply(pool, Failure(E503), now=at(i), policy=POLICY)
        if i % 6 == 0:  # every other failed pool recovers
            for _ in range(3):
                store.apply(pool, Success(), now=at(i), policy=POLICY)
    got = store.get_many([*pools, *pools[:10]])
    assert list(got) == pools
    for i, pool in enumerate(pools):
        state = got[pool]
        if i % 6 == 0:
            assert state == PoolState(None, 0, 4)
        elif i % 3 == 0:
            assert state == PoolState(ActiveError(E503, at(i), at(i), 1), 0, 1)
        else:
            assert state == PoolState()
    assert store.get_many([]) == {}


def test_pools_are_independent(store: PoolErrorStore) -> None:
    other = PoolKey(namespace="ns", runner_name="other")
    store.apply(POOL, Failure(E503), now=T0, policy=POLICY)
    assert store.get(other) == PoolState()
    assert store.apply(other, Success(), now=T0, policy=POLICY).written is False


def test_retire_makes_the_pool_healthy_and_keeps_the_version_growing(
    store: PoolErrorStore,
) -> None:
    store.retire(POOL, now=at(0))  # never written: nothing to retire
    assert store.get(POOL) == PoolState()
    opened = store.apply(POOL, Failure(E503), now=at(1), policy=POLICY).state
    store.retire(POOL, now=at(2))
    retired = store.get(POOL)
    assert retired.healthy and retired.version > opened.version
    assert store.get_many([POOL]) == {POOL: retired}
    # A success writes nothing; the next failure opens a fresh episode.
    assert store.apply(POOL, Success(), now=at(3), policy=POLICY).written is False
    again = store.apply(POOL, Failure(E503), now=at(4), policy=POLICY).state
    assert again.active_error is not None
    assert (again.active_error.first_seen, again.active_error.count) == (at(4), 1)
