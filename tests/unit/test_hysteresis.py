"""core.hysteresis: the pure observe() state machine, table-driven."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import ServerlessConnectionError, ServerlessHttpError
from core.hysteresis import (
    ActiveError,
    Failure,
    HysteresisPolicy,
    Outcome,
    PoolState,
    Success,
    changes,
    observe,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
E503 = ServerlessHttpError(status_code=503, body="down")


@dataclass(frozen=True)
class Expect:
    active: bool
    count: int = 0
    successes: int = 0
    version: int = 0
    first_seen_step: int | None = None  # index in the trace of the failure that opened the episode
    last_seen_step: int | None = None


def _outcome(ch: str, i: int) -> Outcome:
    # Distinct errors per step, so "the latest error wins" is checked too.
    return Failure(ServerlessHttpError(status_code=500 + i)) if ch == "E" else Success()


def _run(trace: str, policy: HysteresisPolicy) -> PoolState:
    state = PoolState()
    for i, ch in enumerate(trace):
        state = observe(state, _outcome(ch, i), now=T0 + timedelta(seconds=i), policy=policy)
    return state


CASES = [
    pytest.param("", 3, Expect(active=False), id="empty_is_healthy"),
    pytest.param("SSS", 3, Expect(active=False), id="healthy_successes_change_nothing"),
    pytest.param("E", 3, Expect(True, 1, 0, 1, 0, 0), id="first_error_opens_episode"),
    pytest.param("EE", 3, Expect(True, 2, 0, 2, 0, 1), id="second_error_bumps_count"),
    pytest.param("ES", 3, Expect(True, 1, 1, 2, 0, 0), id="one_success_counts"),
    pytest.param("ESS", 3, Expect(True, 1, 2, 3, 0, 0), id="two_successes_not_enough"),
    pytest.param("ESSS", 3, Expect(False, version=4), id="three_successes_clear"),
    pytest.param("EESSS", 3, Expect(False, version=5), id="error_then_recover"),
    pytest.param("EESSSSS", 3, Expect(False, version=5), id="successes_after_clear_free"),
    pytest.param("ESSES", 3, Expect(True, 2, 1, 5, 0, 3), id="error_resets_counter"),
    pytest.param("ESSESS", 3, Expect(True, 2, 2, 6, 0, 3), id="interrupted_recovery"),
    pytest.param("ESSSE", 3, Expect(True, 1, 0, 5, 4, 4), id="new_episode_new_first_seen"),
    pytest.param("SSESSSSSE", 3, Expect(True, 1, 0, 5, 8, 8), id="healthy_gaps_no_version"),
    pytest.param("E", 1, Expect(True, 1, 0, 1, 0, 0), id="threshold_one_error"),
    pytest.param("ES", 1, Expect(False, version=2), id="threshold_one_clears_at_once"),
    pytest.param("ESSSS", 5, Expect(True, 1, 4, 5, 0, 0), id="threshold_five_four_short"),
    pytest.param("ESSSSS", 5, Expect(False, version=6), id="threshold_five_clears"),
]


@pytest.mark.parametrize(("trace", "threshold", "expect"), CASES)
def test_observe_trace(trace: str, threshold: int, expect: Expect) -> None:
    state = _run(trace, HysteresisPolicy(success_threshold=threshold))
    assert state.version == expect.version
    assert state.consecutive_successes == expect.successes
    if not expect.active:
        assert state.active_error is None
        assert state.healthy
        return
    active = state.active_error
    assert active is not None
    assert active.count == expect.count
    assert expect.first_seen_step is not None and expect.last_seen_step is not None
    assert active.first_seen == T0 + timedelta(seconds=expect.first_seen_step)
    assert active.last_seen == T0 + timedelta(seconds=expect.last_seen_step)
    last_error_step = trace.rindex("E")
    assert active.error == ServerlessHttpError(status_code=500 + last_error_step)


def test_success_while_healthy_returns_same_state() -> None:
    state = PoolState(version=7)
    assert observe(state, Success(), now=T0) is state
    assert not changes(state, Success())


@pytest.mark.parametrize(
    ("state", "outcome", "expected"),
    [
        pytest.param(PoolState(), Failure(E503), True, id="error_on_healthy"),
        pytest.param(PoolState(), Success(), False, id="success_on_healthy"),
        pytest.param(
            PoolState(ActiveError(E503, T0, T0, 1), 1, 2), Success(), True, id="success_on_active"
        ),
    ],
)
def test_changes_matches_observe(state: PoolState, outcome: Outcome, expected: bool) -> None:
    assert changes(state, outcome) is expected
    assert (observe(state, outcome, now=T0) != state) is expected


def test_latest_error_replaces_the_shown_one() -> None:
    conn = ServerlessConnectionError(message="refused", reason="connect")
    state = observe(PoolState(), Failure(E503), now=T0)
    state = observe(state, Failure(conn), now=T0 + timedelta(seconds=5))
    assert state.active_error == ActiveError(conn, T0, T0 + timedelta(seconds=5), 2)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        observe(PoolState(), Failure(E503), now=datetime(2026, 1, 1))


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="success_threshold"):
        HysteresisPolicy(success_threshold=0)


def test_state_is_frozen() -> None:
    state = PoolState()
    with pytest.raises(AttributeError):
        state.version = 3  # type: ignore[misc]
