"""The system clock: the one place the kit reads wall and monotonic time."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final


class SystemClock:
    """``core.ports.Clock`` on the machine's clocks."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()


SYSTEM_CLOCK: Final = SystemClock()
