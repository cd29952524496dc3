"""The in-memory probe store: a dict behind a lock with DynamoDB's claim semantics."""

from __future__ import annotations

import threading

from core.models import PoolKey
from core.ports import ProbeState


class InMemoryProbeStore:
    """A dict behind a lock with the same claim semantics (unit tests, one-process tools)."""

    def __init__(self) -> None:
        self._states: dict[str, ProbeState] = {}
        self._lock = threading.Lock()

    def get(self, pool: PoolKey) -> ProbeState | None:
        with self._lock:
            return self._states.get(pool.id)

    def claim(self, pool: PoolKey, *, now: float, lease_s: float) -> ProbeState | None:
        with self._lock:
            state = self._states.get(pool.id) or ProbeState(pool_id=pool.id)
            if pool.id in self._states and state.next_probe_at > now:
                return None
            claimed = ProbeState(
                pool_id=pool.id,
                failures=state.failures,
                next_probe_at=now + lease_s,
                last_error_code=state.last_error_code,
            )
            self._states[pool.id] = claimed
            return claimed

    def record_failure(
        self, pool: PoolKey, *, failures: int, next_probe_at: float, error_code: str | None
    ) -> None:
        with self._lock:
            self._states[pool.id] = ProbeState(
                pool_id=pool.id,
                failures=failures,
                next_probe_at=next_probe_at,
                last_error_code=error_code,
            )

    def reset(self, pool: PoolKey) -> None:
        with self._lock:
            self._states.pop(pool.id, None)
