"""Per-pool probe backoff: exponential with jitter, as a small value and a pure function.

A broken endpoint is probed after ``base_s``, then 2x, 4x... up to ``max_s`` (never hammered);
saving the pool's runner config resets the count so a fix is noticed on the next tick.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeBackoff:
    """Delay before the next probe of a pool after ``failures`` failed rounds."""

    base_s: float = 60.0
    max_s: float = 900.0
    jitter: float = 0.1
    """Fraction of the delay that is randomized (spreads many broken pools over ticks)."""

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.max_s < self.base_s:
            raise ValueError("need 0 < base_s <= max_s")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")

    def delay(self, failures: int, *, rand: float) -> float:
        """Seconds to wait after ``failures`` (>= 1) failed rounds; ``rand`` is uniform [0, 1)."""
        if failures <= 0:
            return 0.0
        exp = min(failures - 1, 32)  # 2**32 * base is past any max; avoid float overflow
        raw = min(self.base_s * (2.0**exp), self.max_s)
        return raw * (1.0 - self.jitter * rand)
