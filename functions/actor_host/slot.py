"""The runner slot of one execution: waited for a little, held while it runs, given back.

A pool runs at most ``max_runners`` executions at once (``SlotsTable``, one conditional put per
slot). While none is free the host polls with a growing, jittered pause, for at most
``slot_wait_s``: a Lambda never idles for minutes; the record goes back to the queue instead.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal

from core.errors import NoCapacity
from core.models import RunnerConfig
from core.policy import backoff_s
from core.ports import SlotLease
from functions.actor_host.deps import HostDeps
from functions.actor_host.telemetry import Telemetry

Refusal = Literal["no_slot", "deadline"]
"""Why no slot was taken: none free within ``slot_wait_s``, or waiting longer would miss the
deadline."""


@dataclass(frozen=True)
class SlotRequest:
    """Which slot an execution asks for, and for how long."""

    pool_id: str
    total: int
    owner: str
    lease_s: float
    start: int
    """The slot tried first (the invocation spreads its executions over distinct slots)."""


SLOT_PAUSE_MAX_S: Final = 2.0
"""The longest pause between two tries for a slot."""


class SlotHold:
    """Acquired on enter (``refused`` says why not), released on exit unless the commit released
    it in its own transaction (``mark_released``). No request: nothing to hold."""

    def __init__(
        self,
        deps: HostDeps,
        request: SlotRequest | None,
        *,
        fits: Callable[[float], bool],
        on_first_wait: Callable[[], Awaitable[None]],
    ) -> None:
        self._deps = deps
        self._request = request
        self._fits = fits
        self._on_first_wait = on_first_wait
        self.lease: SlotLease | None = None
        self.waited = False
        self.refused: Refusal | None = None

    async def __aenter__(self) -> SlotHold:
        if self._request is not None:
            await self._wait(self._request)
        return self

    def mark_released(self) -> None:
        """The commit released the slot with its own write: nothing to release on exit."""
        self.lease = None

    async def __aexit__(self, *exc_info: object) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            await self._deps.io(self._deps.slots.release, lease)

    async def _wait(self, request: SlotRequest) -> None:
        deps = self._deps
        waits = 0
        waited_s = 0.0
        while True:
            self.lease = await deps.io(
                deps.slots.acquire,
                request.pool_id,
                total=request.total,
                owner=request.owner,
                lease_s=request.lease_s,
                now=deps.clock.now().timestamp(),
                start=request.start,
            )
            if self.lease is not None:
                self.waited = waits > 0
                return
            if waits == 0:
                await self._on_first_wait()
            pause = backoff_s(
                waits + 1,
                base_s=deps.slot_poll_s,
                max_s=SLOT_PAUSE_MAX_S,
                rand=deps.rand(),
                jitter=0.5,  # at least half the step: waiters spread out, none spins
                factor=1.5,
            )
            if waited_s + pause > deps.settings.slot_wait_s:
                self.refused = "no_slot"
                return
            if not self._fits(pause):
                self.refused = "deadline"
                return
            waits += 1
            waited_s += pause
            await deps.sleep(pause)


class Slots:
    """The slot holds of one invocation, spread over distinct slots (one conditional put each)."""

    def __init__(self, deps: HostDeps, telemetry: Telemetry) -> None:
        self._deps = deps
        self._telemetry = telemetry
        self._base = int(deps.rand() * 1_000_003)
        self._next: Counter[str] = Counter()

    def hold(
        self,
        config: RunnerConfig | None,
        *,
        actor_id: str,
        message_id: str,
        owner: str,
        lease_s: float,
        fits: Callable[[float], bool],
    ) -> SlotHold:
        """The slot of one execution among the pool's ``max_runners`` (none without a config);
        ``fits(pause_s)``: whether waiting that much longer still meets the deadline."""
        request = None
        if config is not None:
            pool_id = config.pool.id
            start = self._base + self._next[pool_id]
            self._next[pool_id] += 1
            request = SlotRequest(pool_id, config.max_runners, owner, lease_s, start)
        return SlotHold(
            self._deps,
            request,
            fits=fits,
            on_first_wait=lambda: self._note_no_capacity(actor_id, message_id),
        )

    async def _note_no_capacity(self, actor_id: str, message_id: str) -> None:
        """No slot free: the actor and the message record say why it waits (never masking a
        runner failure: the actor's reason is only set when it has none)."""
        deps = self._deps
        self._telemetry.count("NoCapacity")
        await asyncio.gather(
            deps.io(deps.actors.set_failure_reason, actor_id, NoCapacity(), only_if_empty=True),
            deps.io(
                deps.messages.note_waiting,
                actor_id,
                message_id,
                error=NoCapacity().to_json(),
                now=deps.clock.now(),
            ),
        )
