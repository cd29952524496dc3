"""The fail-fast gateway's wait loop: poll for a result, check the pool on a schedule, give up.

Pure: the clock, the sleep and both checks are parameters, so tests never wait.
Schedule (DESIGN.md §6): the pool is first checked ``first_check_s`` after the message was
enqueued, then every ``check_interval_s``; the result is polled every ``poll_interval_s``;
the wait ends at ``ready_timeout_s`` (or earlier if the caller's own deadline is closer).
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
) -> Ready[R] | PoolFailed[E] | TimedOut:
    """Wait for ``check_result`` to return a value, failing fast when ``check_pool`` does."""
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
        if now >= next_pool_check:
            pool_error = check_pool()
            now = clock()
            if pool_error is not None:
                return PoolFailed(pool_error, now - start)
            # Keep the 1 s, 3 s, 5 s... grid even if a check ran late.
            while next_pool_check <= now:
                next_pool_check += policy.check_interval_s
        if now >= deadline:
            return TimedOut(now - start)
        wake = min(now + policy.poll_interval_s, next_pool_check, deadline)
        sleep(max(wake - now, 0.0))
