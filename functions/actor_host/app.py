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
from adapters.observability import Invocation
from core.events import ErrorsChannel
from core.models import MessageEnvelope
from functions.actor_host.host import ActorHost, HostDeps, KeepInQueue, Telemetry
from functions.actor_host.processor import FifoGroupAsyncProcessor, group_of

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
    from adapters.actor_store import DynamoDBActorStore
    from adapters.message_store import DynamoDBMessageStore
    from adapters.runner.attempt import StartLimits
    from adapters.runner.client import AsyncRunnerClient
    from adapters.runner.transport import StartTarget
    from adapters.runner_config_store import DynamoDBRunnerConfigStore
    from adapters.slots import DynamoDBSlotStore
    from adapters.sqs import SqsDeadLetterQueue, SqsMessageQueue, SqsReplies
    from adapters.tracker import build_tracker

    actors = DynamoDBActorStore(settings.actors_table, client=dynamodb)
    slots = DynamoDBSlotStore(settings.slots_table, client=dynamodb)
    limits = StartLimits.from_settings(settings)
    wiring: dict[str, Any] = {
        "settings": settings,
        "actors": actors,
        "messages": DynamoDBMessageStore(
            settings.messages_table,
            client=dynamodb,
            actors=actors,
            slots=slots,
            retention_s=settings.message_retention_days * 86_400 or None,
        ),
        "configs": DynamoDBRunnerConfigStore(settings.runner_configs_table, client=dynamodb),
        "slots": slots,
        "tracker": build_tracker(settings),
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
    }
    return HostDeps(**{**wiring, **overrides})


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
    visibility: dict[str, tuple[str, int]] = {}

    async def record_handler(record: Any) -> str:
        try:
            return await host.execute(record)
        except KeepInQueue as keep:
            visibility[record.message_id] = (record.receipt_handle, keep.visibility_s)
            raise

    processor = FifoGroupAsyncProcessor(held_back=host.held_back)
    with processor(records, record_handler, lambda_context=context):
        processor.run(on_finish=host.aclose)

    # Records held back behind a failed one of their group (and anything not yet given a
    # visibility) come back at once: FIFO still delivers them only after the earlier one.
    for failed in processor.failed_records:
        visibility.setdefault(failed.message_id, (failed.receipt_handle, 0))
    if visibility and deps.queue is not None:
        try:
            refused = deps.queue.change_visibility_many(list(visibility.values()))
        except Exception:
            # Not fatal: the records keep the queue's visibility timeout and come back later.
            deps.logger.exception("ChangeMessageVisibility failed")
        else:
            if refused:
                deps.logger.warning("visibility not changed", extra={"receipts": len(refused)})

    response = processor.response()
    invocation = invocation if invocation is not None else Invocation(SERVICE)
    invocation.summary.update(
        records=len(records),
        outcomes=dict(host.telemetry.outcomes),
        batch_item_failures=len(response.get("batchItemFailures", [])),
        errors_channel=channel.summary(),
    )
    add_metrics(invocation, host.telemetry)
    return dict(response)


def first_actor_of_each_group(records: list[dict[str, Any]]) -> dict[str, str]:
    """SQS message id -> actor id of each group's first record (malformed ones skipped)."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for record in records:
        group = group_of(record)
        if group in seen:
            continue
        seen.add(group)
        try:
            envelope = MessageEnvelope.model_validate_json(record.get("body") or "")
        except ValueError:
            continue
        out[str(record.get("messageId"))] = envelope.actor_id
    return out


def add_metrics(invocation: Invocation, telemetry: Telemetry) -> None:
    """EMF: executions by outcome (dimension ``outcome``), failed attempts by error ``code``,
    and the invocation's counters."""
    for outcome, count in sorted(telemetry.outcomes.items()):
        invocation.metric("Executions", count, outcome=outcome)
    for code, count in sorted(telemetry.error_codes.items()):
        invocation.metric("ExecutionErrors", count, code=code)
    for name, count in sorted(telemetry.counts.items()):
        invocation.metric(name, count)
    for ms in telemetry.time_to_init_ms:
        invocation.metric("TimeToInit", ms, "Milliseconds")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS event source entry point (``ReportBatchItemFailures``)."""
    return observability.run(SERVICE, _invoke, event, context)


def _invoke(event: dict[str, Any], context: Any, invocation: Invocation) -> dict[str, Any]:
    return handle(event, context, deps(), invocation)


# SnapStart: build deps() into the snapshot, rebuild clients after each restore.
snapstart.register(warm=deps, reset=deps.cache_clear)
