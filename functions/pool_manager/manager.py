"""One pool manager round (DESIGN.md §6), as a plain function over its dependencies.

1. Failing pools: every pool with an active error whose probe backoff is due is probed up to
   ``success_threshold`` times in a row (stopping at the first failure), each outcome reported
   to the tracker, so a repaired endpoint clears within one round. A failed round doubles the
   pool's backoff (kept in ``PoolProbesTable``); saving the runner config resets it.
2. Warm pools: healthy pools with ``min_runners`` get that many probe starts at once; each
   takes a runner slot like an execution, so probes never push a pool past ``max_runners``.
3. Silent executions: a message still ``running`` past its pool's ``request_lifespan`` plus
   ``silent_after_s`` has lost its host; its actor gets ``runner_no_response{runner_id}``.

Everything is bounded by the Lambda's remaining time: a probe starts only if its whole
``init_timeout_s`` fits, so the kit's own deadline is never reported as the endpoint's error.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from adapters.settings import Settings
from core.errors import RunnerNoResponse
from core.events import ErrorEvent
from core.models import PoolKey, RunnerConfig
from core.policy import backoff_s, fits_deadline
from core.ports import ProbeResult

if TYPE_CHECKING:
    from core.hysteresis import PoolErrorStatus
    from core.ports import (
        ActorStore,
        Clock,
        MessageStore,
        ProbeStore,
        RunnerConfigStore,
        SlotLease,
        SlotStore,
        Tracker,
    )


logger = logging.getLogger(__name__)
READ_FAILED = "tracker_read_failed"
"""Logged when a round cannot read the tracker at all."""
_REPORT_LOCK = threading.Lock()
PROBE_JITTER = 0.1
"""A failing pool's next probe comes 90-100 % of its backoff later: spread over ticks, never
much earlier than planned."""

ProbeFn = Callable[[RunnerConfig, float], ProbeResult]
"""``(config, deadline on deps.clock.monotonic()) -> outcome``: one probe start."""


@dataclass
class PoolManagerDeps:
    """What a round touches; ``app.deps()`` builds the real ones."""

    settings: Settings
    runner_configs: RunnerConfigStore
    tracker: Tracker
    probes: ProbeStore
    actors: ActorStore
    messages: MessageStore
    probe: ProbeFn
    clock: Clock
    rand: Callable[[], float]
    max_workers: int = 8
    slots: SlotStore | None = None
    """Warm probes take runner slots when set (the deployed pool manager always sets it)."""


@dataclass
class RoundReport:
    """What a round did (logged as one line; tests read it)."""

    pools: int = 0
    failing: int = 0
    probed: dict[str, list[bool]] = field(default_factory=dict)
    cleared: list[str] = field(default_factory=list)
    backed_off: dict[str, float] = field(default_factory=dict)
    not_due: list[str] = field(default_factory=list)
    warm: dict[str, int] = field(default_factory=dict)
    warm_no_slot: dict[str, int] = field(default_factory=dict)
    silent_marked: list[str] = field(default_factory=list)
    skipped_for_time: list[str] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    errors_reported: int = 0
    active_after: int | None = 0
    """Pools with an active error after the round; ``None`` if the tracker could not be read."""
    failing_pools: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_round(deps: PoolManagerDeps, *, budget_s: float) -> RoundReport:
    """One scheduled round within ``budget_s`` seconds."""
    report = RoundReport()
    end = deps.clock.monotonic() + max(budget_s, 0.0)
    configs = deps.runner_configs.list_all()
    report.pools = len(configs)
    statuses: dict[PoolKey, PoolErrorStatus | None]
    try:
        found = deps.tracker.active_errors([c.pool for c in configs]) if configs else {}
        statuses = dict(found)
    except Exception:
        # The tracker cannot be read at all (one bad record is isolated by the store): warm
        # nothing, still mark silent executions; ActivePoolErrors stays unknown (not emitted),
        # and the alarm treats a missing datapoint as breaching.
        logger.exception("pool manager: reading the tracker failed", extra={"code": READ_FAILED})
        report.failed_steps.append("tracker_read")
        report.active_after = None
        statuses = {c.pool: None for c in configs}
    failing = [c for c in configs if c.pool in statuses]
    healthy_warm = [c for c in configs if c.pool not in statuses and c.min_runners > 0]
    report.failing = len(failing)

    with ThreadPoolExecutor(max_workers=max(1, deps.max_workers)) as pool_exec:
        list(pool_exec.map(_guarded(_probe_failing, deps, end, report), failing))
        list(pool_exec.map(_guarded(_warm, deps, end, report), healthy_warm))

    try:
        _mark_silent(deps, {c.pool: c for c in configs}, report)
    except Exception:
        logger.exception("pool manager: marking silent executions failed")
        report.failed_steps.append("silent_executions")
    if configs and "tracker_read" not in report.failed_steps:
        try:
            after = deps.tracker.active_errors([c.pool for c in configs])
            report.active_after = len(after)
            report.failing_pools = sorted(pool.id for pool in after)
        except Exception:
            logger.exception(
                "pool manager: reading the tracker failed", extra={"code": READ_FAILED}
            )
            report.failed_steps.append("tracker_read")
            report.active_after = None
    return report


def _guarded(
    step: Callable[[PoolManagerDeps, RunnerConfig, float, RoundReport], None],
    deps: PoolManagerDeps,
    end: float,
    report: RoundReport,
) -> Callable[[RunnerConfig], None]:
    """One pool's step; a failure is logged and counted, and the other pools go on."""

    def run(config: RunnerConfig) -> None:
        try:
            step(deps, config, end, report)
        except Exception:
            logger.exception(
                "pool manager step failed for %s", config.pool.id, extra={"pool": config.pool.id}
            )
            with _REPORT_LOCK:
                report.failed_steps.append(config.pool.id)

    return run


def _probe_s(settings: Settings) -> float:
    """The longest one probe start can take: connecting, then waiting for ``init``."""
    return settings.connect_timeout_s + settings.init_timeout_s


def _fits(deps: PoolManagerDeps, end: float) -> bool:
    """A probe may start only if its whole init timeout fits before the round's end."""
    remaining = end - deps.clock.monotonic()
    return fits_deadline(remaining, margin_s=0.0, lifespan_s=_probe_s(deps.settings))


def _record(
    deps: PoolManagerDeps, pool: PoolKey, outcome: ProbeResult, report: RoundReport
) -> None:
    if outcome.ok:
        deps.tracker.report_success(pool)
    elif outcome.error is not None:
        deps.tracker.report_error(pool, outcome.error)
        with _REPORT_LOCK:
            report.errors_reported += 1


def _probe_failing(
    deps: PoolManagerDeps, config: RunnerConfig, end: float, report: RoundReport
) -> None:
    settings = deps.settings
    pool = config.pool
    if not _fits(deps, end):
        report.skipped_for_time.append(pool.id)
        return
    lease_s = settings.success_threshold * _probe_s(settings)
    claim = deps.probes.claim(pool, now=deps.clock.now().timestamp(), lease_s=lease_s)
    if claim is None:
        report.not_due.append(pool.id)
        return
    results: list[bool] = []
    failed: ProbeResult | None = None
    for _ in range(settings.success_threshold):
        if not _fits(deps, end):
            report.skipped_for_time.append(pool.id)
            break
        outcome = deps.probe(config, end)
        _record(deps, pool, outcome, report)
        results.append(outcome.ok)
        if not outcome.ok:
            failed = outcome
            break
    report.probed[pool.id] = results
    if failed is not None:
        failures = claim.failures + 1
        delay = backoff_s(
            failures,
            base_s=settings.probe_backoff_base_s,
            max_s=max(settings.probe_backoff_max_s, settings.probe_backoff_base_s),
            rand=deps.rand(),
            jitter=PROBE_JITTER,
        )
        deps.probes.record_failure(
            pool,
            failures=failures,
            next_probe_at=deps.clock.now().timestamp() + delay,
            error_code=failed.error.code if failed.error is not None else None,
        )
        report.backed_off[pool.id] = delay
    elif results and len(results) == settings.success_threshold:
        deps.probes.reset(pool)
        report.cleared.append(pool.id)
    else:
        # Out of time mid-round: make the pool due again next round, keeping its count.
        deps.probes.record_failure(
            pool,
            failures=claim.failures,
            next_probe_at=deps.clock.now().timestamp(),
            error_code=claim.last_error_code,
        )


def _warm(deps: PoolManagerDeps, config: RunnerConfig, end: float, report: RoundReport) -> None:
    if not _fits(deps, end):
        report.skipped_for_time.append(config.pool.id)
        return
    wanted = min(config.min_runners, config.max_runners)
    leases = _take_slots(deps, config, wanted)
    try:
        count = len(leases)
        if count < wanted:
            with _REPORT_LOCK:
                report.warm_no_slot[config.pool.id] = wanted - count
        # Probes of one pool run together, so the endpoint sees ``min_runners`` concurrent
        # starts, minus those whose slot an execution holds (that runner is warm already).
        with ThreadPoolExecutor(max_workers=max(1, min(count, 16))) as inner:
            outcomes = list(inner.map(lambda _: deps.probe(config, end), range(count)))
    finally:
        for lease in leases:
            if lease is not None and deps.slots is not None:
                deps.slots.release(lease)
    for outcome in outcomes:
        _record(deps, config.pool, outcome, report)
    report.warm[config.pool.id] = sum(1 for o in outcomes if o.ok)


def _take_slots(deps: PoolManagerDeps, config: RunnerConfig, wanted: int) -> list[SlotLease | None]:
    """Up to ``wanted`` free runner slots (leased for one probe's time), or ``wanted`` Nones
    when the deps have no slot store."""
    if deps.slots is None:
        return [None] * wanted
    lease_s = _probe_s(deps.settings) + 5.0
    leases: list[SlotLease | None] = []
    for n in range(wanted):
        lease = deps.slots.acquire(
            config.pool.id,
            total=config.max_runners,
            owner=f"pool-manager-{uuid.uuid4().hex}",
            lease_s=lease_s,
            now=deps.clock.now().timestamp(),
            start=n,
        )
        if lease is None:
            break
        leases.append(lease)
    return leases


def _mark_silent(
    deps: PoolManagerDeps, configs: dict[PoolKey, RunnerConfig], report: RoundReport
) -> None:
    settings = deps.settings
    now = deps.clock.now()
    margin = timedelta(seconds=settings.silent_after_s)
    for message in deps.messages.list_running(older_than=now - margin, limit=100):
        if not message.runner_id:
            continue  # no init yet: the host's own init timeout covers it
        actor = deps.actors.get(message.actor_id)
        if actor is None:
            continue
        config = configs.get(actor.pool)
        lifespan = config.request_lifespan if config else settings.max_request_lifespan_s
        since = message.started_at or message.updated_at
        if since is None or now - since <= timedelta(seconds=lifespan) + margin:
            continue
        reason = RunnerNoResponse(runner_id=message.runner_id)
        if actor.failure_reason == reason:
            continue  # marked in an earlier round
        deps.actors.set_failure_reason(actor.actor_id, reason)
        event = ErrorEvent.of(
            reason,
            scope="actor",
            now=now,
            tags={"source": "pool_manager"},
            context={"message_id": message.message_id, "silent_since": since.isoformat()},
        )
        deps.actors.append_errors(actor.actor_id, [event], cap=settings.errors_cap)
        report.silent_marked.append(f"{actor.actor_id}/{message.message_id}")
