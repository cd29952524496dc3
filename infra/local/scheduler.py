"""The pool manager's schedule: one invocation every few seconds (the template's is a minute;
locally recovery should be seen quickly)."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Ticker:
    """Invokes a scheduled function every ``every_s`` seconds until ``stop`` is set."""

    invoke: Callable[[dict[str, Any]], Any]
    every_s: float
    stop: threading.Event
    log: Callable[[str], None]
    ticks: int = 0

    def tick_once(self) -> Any:
        """One scheduled invocation (EventBridge Scheduler sends an empty event)."""
        self.ticks += 1
        return self.invoke({})

    def run(self) -> None:
        """Tick until ``stop`` is set; an error is logged and the next tick comes on time."""
        while not self.stop.wait(self.every_s):
            try:
                self.tick_once()
            except Exception:
                self.log(f"pool_manager raised:\n{traceback.format_exc()}")
