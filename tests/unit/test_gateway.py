"""The pure gateway wait loop: its schedule on a virtual clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from core.gateway import GatewayPolicy, PoolFailed, Ready, TimedOut, wait_for_result
from tests.helpers.clock import FakeClock


@dataclass
class Scene:
    """The fake scene, and when the pool was looked at on it."""

    clock: FakeClock = field(default_factory=FakeClock)
    pool_checks: list[float] = field(default_factory=list)

    @property
    def t(self) -> float:
        return self.clock.monotonic()


def run(
    scene: Scene,
    *,
    result_at: float | None = None,
    error_at: float | None = None,
    policy: GatewayPolicy | None = None,
    max_wait_s: float | None = None,
) -> Ready[str] | PoolFailed[str] | TimedOut:
    def check_result() -> str | None:
        return "done" if result_at is not None and scene.t >= result_at else None

    def check_pool() -> str | None:
        scene.pool_checks.append(scene.t)
        return "broken" if error_at is not None and scene.t >= error_at else None

    return wait_for_result(
        check_result=check_result,
        check_pool=check_pool,
        policy=policy or GatewayPolicy(),
        clock=scene.clock.monotonic,
        sleep=scene.clock.sleep,
        max_wait_s=max_wait_s,
    )


def test_pool_error_is_seen_at_the_first_check() -> None:
    scene = Scene()
    outcome = run(scene, error_at=0.0)
    assert isinstance(outcome, PoolFailed)
    assert outcome.pool_error == "broken"
    assert outcome.waited_s == pytest.approx(1.0)
    assert scene.pool_checks == [pytest.approx(1.0)]


def test_pool_checks_follow_the_grid() -> None:
    scene = Scene()
    outcome = run(scene)
    assert isinstance(outcome, TimedOut)
    assert outcome.waited_s == pytest.approx(25.0)
    expected = [1.0 + 2.0 * i for i in range(13)]  # 1, 3, ... 25
    assert scene.pool_checks == [pytest.approx(t) for t in expected]


# By id: when the result lands, and when the gateway returns it (at the next poll).
NEXT_POLL = {"already_done": (0.0, 0.0), "next_poll": (0.3, 0.5), "later": (7.9, 8.0)}


@pytest.mark.parametrize(("result_at", "expected"), NEXT_POLL.values(), ids=NEXT_POLL.keys())
def test_result_is_returned_at_the_next_poll(result_at: float, expected: float) -> None:
    scene = Scene()
    outcome = run(scene, result_at=result_at)
    assert isinstance(outcome, Ready)
    assert outcome.result == "done"
    assert outcome.waited_s == pytest.approx(expected)


def test_result_wins_over_a_pool_error_seen_at_the_same_time() -> None:
    scene = Scene()
    outcome = run(scene, result_at=1.0, error_at=1.0)
    assert isinstance(outcome, Ready)


def test_max_wait_caps_the_timeout() -> None:
    scene = Scene()
    outcome = run(scene, max_wait_s=2.2)
    assert isinstance(outcome, TimedOut)
    assert outcome.waited_s == pytest.approx(2.2)


def test_negative_budget_times_out_at_once() -> None:
    scene = Scene()
    outcome = run(scene, max_wait_s=-1)
    assert isinstance(outcome, TimedOut)
    assert scene.t == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"check_interval_s": 0}, id="zero_interval"),
        pytest.param({"poll_interval_s": 0}, id="zero_poll"),
        pytest.param({"ready_timeout_s": 0}, id="zero_timeout"),
        pytest.param({"first_check_s": -1}, id="negative_first"),
    ],
)
def test_policy_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GatewayPolicy(**kwargs)


def _started_run(
    scene: Scene, *, started_at: float, error_at: float, result_at: float | None
) -> Ready[str] | PoolFailed[str] | TimedOut:
    asked: list[float] = []

    def check_started() -> bool:
        asked.append(scene.t)
        return scene.t >= started_at

    def check_pool() -> str | None:
        scene.pool_checks.append(scene.t)
        return "broken" if scene.t >= error_at else None

    return wait_for_result(
        check_result=lambda: "done" if result_at is not None and scene.t >= result_at else None,
        check_pool=check_pool,
        policy=GatewayPolicy(),
        clock=scene.clock.monotonic,
        sleep=scene.clock.sleep,
        check_started=check_started,
    )


def test_a_started_runner_is_waited_for_whatever_the_pool_does() -> None:
    scene = Scene()
    outcome = _started_run(scene, started_at=0.5, error_at=2.0, result_at=10.0)
    assert isinstance(outcome, Ready) and outcome.result == "done"
    # The pool was looked at until it showed an error; the message had started: no more checks.
    assert scene.pool_checks == [pytest.approx(1.0), pytest.approx(3.0)]


def test_a_started_runner_that_never_finishes_times_out_not_pool_failed() -> None:
    scene = Scene()
    outcome = _started_run(scene, started_at=0.0, error_at=0.0, result_at=None)
    assert isinstance(outcome, TimedOut)


def test_not_started_still_fails_fast() -> None:
    scene = Scene()
    outcome = _started_run(scene, started_at=99.0, error_at=0.0, result_at=None)
    assert isinstance(outcome, PoolFailed)
    assert outcome.waited_s == pytest.approx(1.0)
