"""The fail-fast gateway's wait loop: poll for a result, check the pool on a schedule, give up.

Pure: the clock, the sleep and both checks are parameters, so tests never wait.
Schedule (DESIGN.md §6): the pool is first checked ``first_check_s`` after the message was
enqueued, then every ``check_interval_s``; the result is polled every ``poll_interval_s``;
the wait ends at ``ready_timeout_s`` (or earlier if the caller's own deadline is closer).
It fails fast only *before the message's runner started*: once ``check_started`` says the runner
sent ``init``, the pool is no longer looked at (another actor's failure is not this message's),
and the wait is for the result up to the timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")
E = TypeVar("E")


@dataclass(frozen=True)
class GatewayPolicy:
    """When to look at the pool and the result, and how long to wait at most."""

    first_check_s: float = 1.0
    check_interval_s: float = 2.0
    ready_timeout_s: float = 25.0
    poll_interval_s: float = 0.25

    def __post_init__(self) -> None:
        if self.check_interval_s <= 0 or self.poll_interval_s <= 0 or self.ready_timeout_s <= 0:
            raise ValueError("gateway intervals and timeout must be > 0")
        if self.first_check_s < 0:
            raise ValueError("first_check_s must be >= 0")


@dataclass(frozen=True)
class Ready(Generic[R]):
    """The message reached a terminal status."""

    result: R
    waited_s: float


@dataclass(frozen=True)
class PoolFailed(Generic[E]):
    """The pool has an active error: answer ``actor_runner_failed`` now."""

    pool_error: E
    waited_s: float


@dataclass(frozen=True)
class TimedOut:
    """Neither a result nor a pool error before the deadline: ``actor_ready_timeout``."""

    waited_s: float


def wait_for_result(
    *,
    check_result: Callable[[], R | None],
    check_pool: Callable[[], E | None],
    policy: GatewayPolicy,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    max_wait_s: float | None = None,
    check_started: Callable[[], bool] | None = None,
) -> Ready[R] | PoolFailed[E] | TimedOut:
    """Wait for ``check_result`` to return a value, failing fast when ``check_pool`` does,
    unless ``check_started`` (asked after a pool error is seen) says the runner started."""
    started = False
    start = clock()
    budget = (
        policy.ready_timeout_s if max_wait_s is None else min(policy.ready_timeout_s, max_wait_s)
    )
    deadline = start + max(budget, 0.0)
    next_pool_check = start + policy.first_check_s
    while True:
        result = check_result()
        now = clock()
        if result is not None:
            return Ready(result, now - start)
        if not started and now >= next_pool_check:
            pool_error = check_pool()
            now = clock()
            if pool_error is not None:
                # Asked after the pool read, so a runner that started meanwhile is seen.
                started = check_started is not None and check_started()
                now = clock()
                if not started:
                    return PoolFailed(pool_error, now - start)
            # Keep the 1 s, 3 s, 5 s... grid even if a check ran late.
            while next_pool_check <= now:
                next_pool_check += policy.check_interval_s
        if now >= deadline:
            return TimedOut(now - start)
        wake = min(now + policy.poll_interval_s, deadline)
        if not started:
            wake = min(wake, next_pool_check)
        sleep(max(wake - now, 0.0))
