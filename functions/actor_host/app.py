"""actor_host Lambda: SQS FIFO batches of actor messages, run on serverless runners.

``lambda_handler`` is thin: it calls ``handle(event, context, deps())``. ``deps()`` is the
composition root (stores, tracker, SSE client, queues) built on first use and kept while warm.
Heavy modules (boto3, httpx) are imported there, not at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from adapters import observability, snapstart
from adapters.clock import SYSTEM_CLOCK
from adapters.observability import Invocation
from core.events import ErrorsChannel
from functions.actor_host.batch import answer, first_actor_of_each_group, run_batch
from functions.actor_host.deps import HostDeps
from functions.actor_host.execution import ActorHost
from functions.actor_host.telemetry import add_metrics

if TYPE_CHECKING:
    from adapters.settings import Settings

SERVICE: Final = "actor_host"


def get_logger() -> Any:
    """The Powertools Logger, built on first use (it reads its env; importing must not)."""
    return observability.get_logger(SERVICE)


@lru_cache(maxsize=1)
def deps() -> HostDeps:
    """Build everything from ``Settings`` once per warm Lambda."""
    import boto3
    from botocore.config import Config

    from adapters.aws import DeferredClient
    from adapters.settings import get_settings

    # Ten concurrent executions share these clients; botocore's default pool is only 10.
    config = Config(max_pool_connections=64, retries={"mode": "standard"})
    return build_deps(
        get_settings(),
        dynamodb=boto3.client("dynamodb", config=config),
        # Made on the first SQS call: a batch that succeeds needs none (the event source
        # deletes its messages), so most cold starts skip loading the SQS model.
        sqs=DeferredClient("sqs", config=config),
    )


def build_deps(settings: Settings, *, dynamodb: Any, sqs: Any, **overrides: Any) -> HostDeps:
    """The composition root: the DynamoDB stores, tracker, SSE client and queues on these
    clients. ``deps()`` uses it as is; tests and the benchmark pass ``overrides`` (any
    ``HostDeps`` field: ``runner``, ``rand``, ``slot_poll_s``, ...) so they run this wiring."""
    from adapters.runner.attempt import StartLimits
    from adapters.runner.client import AsyncRunnerClient
    from adapters.runner.transport import StartTarget
    from adapters.sqs import SqsDeadLetterQueue, SqsMessageQueue, SqsReplies
    from adapters.stores import DynamoDBStores

    stores = DynamoDBStores(settings, dynamodb)
    limits = StartLimits.from_settings(settings)
    wiring: dict[str, Any] = {
        "messages": stores.committing_messages,
        "runner": lambda: AsyncRunnerClient(limits),
        "target_for": StartTarget.from_config,
        "queue": (
            SqsMessageQueue(settings.actor_messages_queue_url, client=sqs)
            if settings.actor_messages_queue_url
            else None
        ),
        "dlq": (
            SqsDeadLetterQueue(settings.actor_messages_dlq_url, client=sqs)
            if settings.actor_messages_dlq_url
            else None
        ),
        "replies": SqsReplies(client=sqs),
        "logger": get_logger(),
        "clock": SYSTEM_CLOCK,
    }
    return stores.fill(HostDeps, **{**wiring, **overrides})


def handle(
    event: Mapping[str, Any], context: Any, deps: HostDeps, invocation: Invocation | None = None
) -> dict[str, Any]:
    """Run one SQS batch; returns ``{"batchItemFailures": [...]}`` for the event source.
    Its summary and metrics go to ``invocation`` (a fresh one when none is given)."""
    records = list(event.get("Records") or [])
    channel = ErrorsChannel()
    host = ActorHost(
        deps,
        remaining_s=lambda: float(context.get_remaining_time_in_millis()) / 1000.0,
        channel=channel,
        prefetch=first_actor_of_each_group(records),
    )
    verdicts = run_batch(records, host.execute, held_back=host.held_back, on_finish=host.aclose)
    response = answer(records, verdicts, deps)
    invocation = invocation if invocation is not None else Invocation(SERVICE)
    invocation.summary.update(
        records=len(records),
        outcomes=dict(host.telemetry.outcomes),
        batch_item_failures=len(response["batchItemFailures"]),
        errors_channel=channel.summary(),
    )
    add_metrics(invocation, host.telemetry)
    return response


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS event source entry point (``ReportBatchItemFailures``)."""
    return observability.run(SERVICE, _invoke, event, context)


def _invoke(event: dict[str, Any], context: Any, invocation: Invocation) -> dict[str, Any]:
    return handle(event, context, deps(), invocation)


# SnapStart: build deps() into the snapshot, rebuild clients after each restore.
snapstart.register(warm=deps, reset=deps.cache_clear)
