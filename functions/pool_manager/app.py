"""Pool manager Lambda (EventBridge Scheduler, every minute): probes failing pools with backoff,
keeps ``min_runners`` warm, marks silent executions (``manager.run_round``).

``lambda_handler`` -> ``handle(event, context, deps())``; ``deps()`` is the composition root.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from adapters import observability, snapstart
from adapters.clock import SYSTEM_CLOCK
from adapters.observability import Invocation
from core.models import RunnerConfig
from core.ports import ProbeResult
from functions.pool_manager.manager import (
    PoolManagerDeps,
    ProbeFn,
    RoundReport,
    run_round,
)

if TYPE_CHECKING:
    from adapters.settings import Settings

SERVICE: Final = "pool_manager"
DEFAULT_BUDGET_S = 55.0
"""Used when there is no Lambda context (local ticker, tests): below the 60 s timeout."""


def handle(event: dict[str, Any], context: Any, deps: PoolManagerDeps) -> dict[str, Any]:
    """One round, bounded by the Lambda's remaining time minus ``pool_manager_margin_s``."""
    remaining = DEFAULT_BUDGET_S
    get_remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(get_remaining):
        remaining = float(get_remaining()) / 1000.0
    report = run_round(deps, budget_s=remaining - deps.settings.pool_manager_margin_s)
    return report.to_json()


def add_metrics(invocation: Invocation, report: RoundReport) -> None:
    """The round summary (the dashboard's "failing pools" query reads ``failing_pools``) and
    EMF for the dashboard and the ActivePoolErrors alarm (template.yaml)."""
    invocation.summary.update(report.to_json())
    # One string too: Logs Insights shows it as is (a list is split into numbered fields).
    invocation.summary["failing_pools_text"] = ", ".join(report.failing_pools) or "-"
    # Unknown: no datapoint, which the alarm treats as breaching.
    if report.active_after is not None:
        invocation.metric("ActivePoolErrors", report.active_after)
    invocation.metric("PoolManagerFailedSteps", len(report.failed_steps))
    invocation.metric("PoolErrorsReported", report.errors_reported)
    invocation.metric("PoolsCleared", len(report.cleared))


@lru_cache(maxsize=1)
def deps() -> PoolManagerDeps:
    """The composition root: settings, DynamoDB stores, the tracker and one runner client."""
    from adapters.stores import DynamoDBStores

    stores = DynamoDBStores.from_environment()
    return stores.fill(
        PoolManagerDeps, probe=make_probe(stores.settings), clock=SYSTEM_CLOCK, rand=random.random
    )


def make_probe(settings: Settings, **client_kwargs: Any) -> ProbeFn:
    """``(config, deadline) -> ProbeResult``: one probe start, safe from any thread (each start
    runs on its own client and event loop; httpx is imported on the first probe, not at cold
    start)."""

    def probe_config(config: RunnerConfig, deadline: float) -> ProbeResult:
        from adapters.runner.attempt import StartLimits
        from adapters.runner.client import RunnerClient, probe
        from adapters.runner.transport import StartTarget

        client = RunnerClient(StartLimits.from_settings(settings), **client_kwargs)
        return probe(client, StartTarget.from_config(config), deadline=deadline)

    return probe_config


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (the Scheduler event carries nothing the round needs)."""
    return observability.run(SERVICE, _invoke, event, context)


def _invoke(event: dict[str, Any], context: Any, invocation: Invocation) -> dict[str, Any]:
    summary = handle(event, context, deps())
    add_metrics(invocation, RoundReport(**summary))
    return summary


# SnapStart: build deps() into the snapshot, rebuild clients after each restore.
snapstart.register(warm=deps, reset=deps.cache_clear)
