"""The one fake clock of the suite: wall and monotonic time move only when told (or slept)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
"""The fake clock's wall time at monotonic 0."""


class FakeClock:
    """``core.ports.Clock`` that only moves with ``advance`` or ``sleep``.

    ``at(when, hook)`` runs ``hook`` once the clock passes ``when`` (monotonic seconds), so code
    that sleeps while waiting for something sees it happen at a chosen instant, with no real wait.
    """

    def __init__(self, start: datetime = T0, mono: float = 0.0) -> None:
        self.start = start
        self.t = mono
        self._origin = mono
        self.sleeps: list[float] = []
        self._hooks: list[tuple[float, Callable[[], None]]] = []

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t - self._origin)

    def monotonic(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        """Move both clocks forward, running the hooks that fall due on the way."""
        target = self.t + seconds
        while self._hooks and self._hooks[0][0] <= target:
            when, hook = self._hooks.pop(0)
            self.t = max(self.t, when)
            hook()
        self.t = max(self.t, target)

    def sleep(self, seconds: float) -> None:
        """A ``sleep`` for code under test: records the wait and advances instead of waiting."""
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        """``sleep`` for async code."""
        self.sleep(seconds)

    def at(self, when: float, hook: Callable[[], None]) -> None:
        """Run ``hook`` when the monotonic clock reaches ``when``."""
        self._hooks.append((when, hook))
        self._hooks.sort(key=lambda h: h[0])
