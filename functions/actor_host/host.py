"""One SQS batch of actor messages: each record is one execution, run by ``ActorHost.execute``.

The record handler's answer decides the SQS side (see docs/actor_host.md):
- it returns: the record is done (committed, discarded, dead-lettered, a duplicate, malformed)
  and Powertools lets Lambda delete it;
- it raises ``KeepInQueue``: the record is a batch item failure and becomes visible again after
  ``visibility_s`` (a scheduled retry's backoff, 0 for a deadline hand-back, an infrastructure
  backoff otherwise); ``handle`` applies every visibility in one batched call at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol, TypeVar

from pydantic import JsonValue, ValidationError

from adapters.dynamodb.commit import CommitRefusedError
from adapters.dynamodb.messages import RETRYABLE_STATUSES
from adapters.settings import Settings
from adapters.sqs import SqsDeadLetterQueue, SqsMessageQueue, SqsReplies
from core.actor_status import ActorFacts
from core.errors import (
    ActorFailed,
    ExecutionLeaseLostError,
    InternalError,
    MissingExecutionIdError,
    NoCapacity,
    PoolErrorView,
    RunnerError,
    RunnerNoResponse,
    RunnerNoResponseError,
    RunnerPoolError,
    ServerlessInvalidPayload,
    ServerlessStreamEndedEarly,
    StoreCommitFailedError,
)
from core.events import ErrorEvent, ErrorsChannel
from core.execution import (
    CommitFailed,
    ReceiveLimitReached,
    effective_lifespan_s,
    fits_deadline,
    oversized_done,
    reply_body,
    stored_json,
)
from core.models import (
    TERMINAL_STATUSES,
    ActorRecord,
    ErrorPolicy,
    MessageEnvelope,
    PoolKey,
    RunnerConfig,
)
from core.policy import decide, infra_backoff_s, is_retryable, visibility_timeout_s
from core.ports import (
    ActorStore,
    MessageStore,
    RunnerConfigStore,
    SlotLease,
    SlotStore,
    StoredMessage,
)
from core.protocol import DoneFrame, ErrorFrame, InitFrame, StoppingFrame, start_body

T = TypeVar("T")

Outcome = Literal[
    "succeeded",
    "retry_scheduled",
    "failed",
    "dead_lettered",
    "stopped",
    "duplicate",
    "malformed",
    "missing_execution_id",
    "handed_back",
    "held_back",
    "out_of_order",
    "busy",
    "infra_error",
]

# SQS errors that mean the reply queue will never accept the reply (so retrying is pointless).
_PERMANENT_SQS_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidAddress",
        "InvalidParameterValue",
    }
)


class KeepInQueue(Exception):
    """Report this record as a batch item failure, visible again after ``visibility_s``."""

    def __init__(self, outcome: Outcome, visibility_s: int, detail: str = "") -> None:
        super().__init__(f"{outcome}: {detail}" if detail else outcome)
        self.outcome = outcome
        self.visibility_s = visibility_s


class RunnerClient(Protocol):
    """What the host needs from ``adapters.sse_client.AsyncRunnerClient``."""

    def start(
        self, target: Any, body: dict[str, Any], *, deadline: float | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Any]]: ...


class Tracker(Protocol):
    """What the host needs from ``adapters.tracker.PoolErrorTracker``."""

    def report_error(self, pool: PoolKey, error: RunnerPoolError) -> None: ...

    def report_success(self, pool: PoolKey) -> None: ...


class Telemetry:
    """Counters and timings of one invocation, flushed as EMF metrics at the end."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.error_codes: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.time_to_init_ms: list[float] = []

    def outcome(self, outcome: str) -> None:
        self.outcomes[outcome] += 1

    def count(self, name: str, value: int = 1) -> None:
        self.counts[name] += value


@dataclass
class HostDeps:
    """Everything an execution touches; ``functions.actor_host.app.deps`` builds the real one."""

    settings: Settings
    actors: ActorStore
    messages: MessageStore
    configs: RunnerConfigStore
    slots: SlotStore
    tracker: Tracker
    runner: Callable[[], RunnerClient]
    target_for: Callable[[RunnerConfig], Any]
    queue: SqsMessageQueue | None
    dlq: SqsDeadLetterQueue | None
    replies: SqsReplies
    logger: Any
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    wall: Callable[[], float] = field(default=lambda: datetime.now(UTC).timestamp())
    monotonic: Callable[[], float] = field(default=lambda: __import__("time").monotonic())
    rand: Callable[[], float] = field(default=lambda: __import__("random").random())
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    slot_poll_s: float = 0.2
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=32, thread_name_prefix="actor-host")
    )


@dataclass
class RecordInfo:
    """The SQS facts of one record the host needs."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    group_id: str | None


def record_info(record: Any) -> RecordInfo:
    """From a Powertools ``SQSRecord``."""
    raw = record.raw_event
    attributes = raw.get("attributes") or {}
    try:
        receive_count = int(attributes.get("ApproximateReceiveCount", "1"))
    except (TypeError, ValueError):
        receive_count = 1
    return RecordInfo(
        message_id=str(raw.get("messageId", "")),
        receipt_handle=str(raw.get("receiptHandle", "")),
        body=raw.get("body") if isinstance(raw.get("body"), str) else "",
        receive_count=receive_count,
        group_id=attributes.get("MessageGroupId"),
    )


class ActorHost:
    """Runs executions for one invocation; ``remaining_s`` is the Lambda's time left."""

    def __init__(
        self,
        deps: HostDeps,
        *,
        remaining_s: Callable[[], float],
        channel: ErrorsChannel,
        prefetch: Mapping[str, str] | None = None,
    ) -> None:
        self.deps = deps
        # SQS message id -> actor id for the first record of each group: those actors are read
        # in one batched call (a later record of a group must see the state its turn left).
        self._prefetch = dict(prefetch or {})
        self._prefetched: asyncio.Future[dict[str, ActorRecord]] | None = None
        self.remaining_s = remaining_s
        self.channel = channel
        self.telemetry = Telemetry()
        self.runner = deps.runner()
        self._configs: dict[str, asyncio.Future[RunnerConfig | None]] = {}
        # Spread this invocation's executions over distinct slots (one conditional put each).
        self._slot_base = int(deps.rand() * 1_000_003)
        self._slot_next: Counter[str] = Counter()

    async def aclose(self) -> None:
        """Close the invocation's runner client (on the loop that used it)."""
        close = getattr(self.runner, "aclose", None)
        if close is not None:
            await close()

    # --- helpers ---------------------------------------------------------------------------

    async def _io(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking I/O on the host's pool, keeping this task's log keys (contextvars)."""
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await loop.run_in_executor(self.deps.executor, call)

    def _fits(self, lifespan_s: float, extra_s: float = 0.0) -> bool:
        return fits_deadline(
            self.remaining_s() - extra_s,
            margin_s=self.deps.settings.deadline_margin_s,
            lifespan_s=lifespan_s,
        )

    def _event(
        self,
        error: Any,
        *,
        scope: Literal["actor", "pool", "handler"],
        tags: dict[str, str],
        context: dict[str, JsonValue] | None = None,
    ) -> ErrorEvent:
        event = ErrorEvent.of(error, scope=scope, now=self.deps.clock(), tags=tags, context=context)
        self.channel.emit(event)
        return event

    # --- the record handler ----------------------------------------------------------------

    async def execute(self, record: Any) -> Outcome:
        """Handle one SQS record (see the module docstring for what returning/raising means)."""
        info = record_info(record)
        try:
            try:
                outcome = await self._execute(info)
            except KeepInQueue:
                raise
            except Exception as exc:
                # A store or network hiccup before anything was decided: back off and redeliver.
                self.deps.logger.exception(
                    "execution failed unexpectedly", extra={"error": str(exc)}
                )
                self._event(
                    InternalError(message=f"{type(exc).__name__}: {exc}"),
                    scope="handler",
                    tags={"sqs_message_id": info.message_id},
                )
                delay = infra_backoff_s(info.receive_count, rand=self.deps.rand())
                raise KeepInQueue("infra_error", visibility_timeout_s(delay), str(exc)) from exc
        except KeepInQueue as keep:
            if not self._last_receives(info):
                self.telemetry.outcome(keep.outcome)
                raise
            # The queue's redrive would take this record next: record the dead letter first.
            outcome = await self._give_up(info, keep)
        self.telemetry.outcome(outcome)
        return outcome

    async def held_back(self, raw: Mapping[str, Any]) -> Outcome | None:
        """A record held back behind a failed one of its group, without running: ``None``
        keeps it queued; on the queue's last receives it is dead-lettered here, recorded
        (``receive_limit_reached``), so SQS's redrive never takes it unrecorded."""
        info = record_info(_RawRecord(raw))
        if not self._last_receives(info):
            return None
        try:
            outcome = await self._give_up(info, KeepInQueue("held_back", 0))
        except KeepInQueue:
            return None
        self.telemetry.outcome(outcome)
        return outcome

    def _last_receives(self, info: RecordInfo) -> bool:
        """The queue's redrive takes a record received ``max_receive_count`` times; the host
        gives up one receive earlier, so a failed give-up still has a receive to finish it."""
        return info.receive_count >= self.deps.settings.max_receive_count - 1

    def _busy_s(self, info: RecordInfo, held: StoredMessage | None) -> int:
        """Visibility of a record whose message another execution holds: until that lease
        ends (a crashed holder's message runs as soon as it can), at least 1 s."""
        if held is None or held.lease_until is None:
            return self._handback_s(info)
        left = held.lease_until - self.deps.clock().timestamp()
        return max(1, visibility_timeout_s(left + 1.0))

    def _handback_s(self, info: RecordInfo) -> int:
        """Visibility of a record handed back for a while (no slot, an earlier message open):
        at least 1 s, growing with the receive count, so waiting never spins the queue."""
        delay = infra_backoff_s(info.receive_count, rand=self.deps.rand())
        return max(1, visibility_timeout_s(delay))

    async def _execute(self, info: RecordInfo) -> Outcome:
        deps = self.deps
        try:
            envelope = MessageEnvelope.model_validate_json(info.body)
        except ValidationError as exc:
            return await self._malformed(info, exc)
        deps.logger.thread_safe_append_keys(
            actor_id=envelope.actor_id, message_id=envelope.message_id
        )
        redrive = _dead_letter_mark(info.body)
        if redrive is not None:
            await self._reopen_redriven(envelope, redrive)
        # No read of the message first: ``claim`` below tells a duplicate (terminal), a missing
        # record and a concurrent holder apart in the same write. The order guard's index read
        # runs beside the actor read.
        actor, oldest = await asyncio.gather(
            self._actor(info, envelope.actor_id),
            self._io(deps.messages.oldest_open, envelope.actor_id),
        )
        if actor is None or actor.status == "stopped":
            return await self._refuse(info, envelope, actor)
        pool = actor.pool
        deps.logger.thread_safe_append_keys(pool=pool.id)
        config = await self._config(pool)
        policy = actor.error_policy or (config.error_policy if config else ErrorPolicy())
        lifespan = self._lifespan(config)
        if not self._fits(lifespan):
            raise KeepInQueue("handed_back", 0, "not enough time left before the deadline")
        if await self._earlier_open(envelope, oldest):
            raise KeepInQueue(
                "out_of_order", self._handback_s(info), "an earlier message of the actor is open"
            )

        owner = uuid.uuid4().hex
        slot: list[SlotLease] = []  # emptied when a commit releases it
        waited = False
        if config is not None:
            lease, waited = await self._acquire_slot(info, envelope, actor, config, owner, lifespan)
            slot.append(lease)
        try:
            claim = await self._io(
                deps.messages.claim,
                envelope.actor_id,
                envelope.message_id,
                owner=owner,
                lease_s=self._lease_s(lifespan),
                now=deps.clock(),
            )
            if claim.outcome == "terminal" and claim.message is not None:
                # A duplicate delivery: finish any outbox effect the first one left.
                await self._effects(claim.message, info)
                return "duplicate"
            if claim.outcome == "missing":
                return await self._missing(info, envelope)
            if claim.outcome == "busy" or claim.message is None:
                raise KeepInQueue(
                    "busy", self._busy_s(info, claim.message), "another execution holds it"
                )
            attempts = claim.message.budget_attempts
            if config is None:
                error = InternalError(message=f"no runner config for pool {pool.id}")
                return await self._fail(
                    info, actor, claim.message, owner, policy, error, retryable=True
                )
            # At init, forget what earlier executions left (start error, no_capacity,
            # runner_no_response, actor_failed): only when there is something to forget.
            clear_no_capacity = waited or ActorFacts.of(actor).has_facts
            try:
                return await self._run(
                    info,
                    actor,
                    config,
                    claim.message,
                    owner,
                    policy,
                    attempts,
                    clear_no_capacity,
                    slot,
                    lifespan,
                )
            except KeepInQueue:
                raise
            except Exception:
                # A store hiccup mid-execution: drop the lease so the redelivery is not "busy"
                # until it expires (a no-op if a final write already dropped it).
                with contextlib.suppress(Exception):
                    await self._io(
                        deps.messages.release,
                        envelope.actor_id,
                        envelope.message_id,
                        owner=owner,
                        now=deps.clock(),
                    )
                raise
        finally:
            if slot:
                await self._io(deps.slots.release, slot[0])

    async def _actor(self, info: RecordInfo, actor_id: str) -> ActorRecord | None:
        if self._prefetch.get(info.message_id) != actor_id:
            return await self._io(self.deps.actors.get, actor_id)
        if self._prefetched is None:
            ids = sorted(set(self._prefetch.values()))
            self._prefetched = asyncio.ensure_future(self._io(self.deps.actors.get_many, ids))
        return (await self._prefetched).get(actor_id)

    async def _config(self, pool: PoolKey) -> RunnerConfig | None:
        """The pool's runner config, read once per invocation (one batch, many actors)."""
        future = self._configs.get(pool.id)
        if future is None:
            future = asyncio.ensure_future(self._io(self.deps.configs.get, pool))
            self._configs[pool.id] = future
        return await future

    def _lifespan(self, config: RunnerConfig | None) -> float:
        if config is None:
            return 0.0
        cap = self.deps.settings.max_request_lifespan_s
        return float(effective_lifespan_s(config.request_lifespan, max_lifespan_s=cap))

    def _lease_s(self, lifespan: float) -> float:
        """How long the message's and the slot's leases last: the run, the deadline margin
        and 5 s of slack."""
        return lifespan + self.deps.settings.deadline_margin_s + 5.0

    async def _earlier_open(
        self, envelope: MessageEnvelope, oldest: tuple[str, str] | None
    ) -> bool:
        """The order guard: is an earlier message of this actor still not final?

        The index gives the actor's oldest open message; only when that is another message are
        records read. The index is eventually consistent: right after the previous message
        of a stream finished it often still names that one, so that one is read first: final,
        it settles the question in one read. Only when it really is open is this one read, to
        compare creation order (a final or unknown one is the claim's call).
        """
        if oldest is None or oldest[0] == envelope.message_id:
            return False
        earlier = await self._io(self.deps.messages.load, envelope.actor_id, oldest[0])
        if earlier is None or earlier.record.status in TERMINAL_STATUSES:
            return False
        mine = await self._io(self.deps.messages.load, envelope.actor_id, envelope.message_id)
        if mine is None or mine.record.status in TERMINAL_STATUSES or mine.open_key is None:
            return False
        return oldest[1] < mine.open_key

    async def _reopen_redriven(self, envelope: MessageEnvelope, mark: dict[str, Any]) -> None:
        """A kit dead letter moved back from the DLQ (an SQS redrive) runs again: its record
        is reopened with a fresh attempt budget, once per dead-letter generation."""
        stored = await self._io(self.deps.messages.load, envelope.actor_id, envelope.message_id)
        if stored is None or stored.record.status not in RETRYABLE_STATUSES:
            return
        if mark.get("retries", 0) != stored.retries:
            return  # a stale copy of an older dead letter
        await self._io(
            self.deps.messages.reopen,
            envelope.actor_id,
            envelope.message_id,
            now=self.deps.clock(),
        )
        self.telemetry.count("Redriven")

    # --- the runner ------------------------------------------------------------------------

    async def _run(
        self,
        info: RecordInfo,
        actor: ActorRecord,
        config: RunnerConfig,
        stored: StoredMessage,
        owner: str,
        policy: ErrorPolicy,
        attempts: int,
        clear_no_capacity: bool,
        slot: list[SlotLease],
        lifespan: float,
    ) -> Outcome:
        deps = self.deps
        pool = actor.pool
        message = stored.record
        body = start_body(actor.actor_id, message.message_id, actor.state, message.input)
        started = deps.monotonic()
        deadline = started + lifespan
        if lifespan < config.request_lifespan:  # the endpoint hears the lifespan it really has
            config = config.model_copy(update={"request_lifespan": int(lifespan)})
        runner_id: str | None = None
        final: Any = None
        error: Any = None
        actor_retryable = True
        try:
            target = deps.target_for(config)
            async with self.runner.start(target, body, deadline=deadline) as frames:
                async for frame in frames:
                    if isinstance(frame, InitFrame):
                        runner_id = frame.runner_id
                        self.telemetry.time_to_init_ms.append((deps.monotonic() - started) * 1000.0)
                        writes: list[Awaitable[Any]] = [self._io(deps.tracker.report_success, pool)]
                        if clear_no_capacity:  # skip a no-op write
                            writes.append(self._io(deps.actors.clear_on_init, actor.actor_id))
                        await asyncio.gather(
                            *writes,
                            self._io(
                                deps.messages.mark_running,
                                actor.actor_id,
                                message.message_id,
                                owner=owner,
                                runner_id=runner_id,
                                now=deps.clock(),
                            ),
                        )
                    elif isinstance(frame, DoneFrame | ErrorFrame | StoppingFrame):
                        final = frame
                        break
        except RunnerError as exc:
            error = exc.error
            deps.logger.warning("runner start failed", extra={"error": error.to_json()})
            self.telemetry.count("PoolErrorsReported")
            await self._io(deps.tracker.report_error, pool, error)
        except RunnerNoResponseError as exc:
            error = exc.reason
            await self._io(deps.actors.set_failure_reason, actor.actor_id, exc.reason)
        except Exception as exc:  # a kit bug must not lose the message
            deps.logger.exception("runner call failed unexpectedly")
            error = InternalError(message=f"{type(exc).__name__}: {exc}")

        if error is None:
            if isinstance(final, DoneFrame):
                return await self._commit(info, actor, stored, owner, final, slot, policy)
            if isinstance(final, ErrorFrame):
                error = ActorFailed(error_code=final.code, message=final.message)
                actor_retryable = final.retryable
                await self._io(deps.actors.set_last_actor_error, actor.actor_id, error)
            elif isinstance(final, StoppingFrame) and runner_id is not None:
                # A clean early end: the message did not run to completion; retried with the
                # policy's backoff like any failure (zero backoff burnt max_attempts in 0.4 s).
                error = RunnerNoResponse(runner_id=runner_id)
                return await self._fail(info, actor, stored, owner, policy, error, retryable=True)
            elif runner_id is None:
                error = ServerlessStreamEndedEarly()
                await self._io(deps.tracker.report_error, pool, error)
            else:
                error = RunnerNoResponse(runner_id=runner_id)
                await self._io(deps.actors.set_failure_reason, actor.actor_id, error)
        retryable = is_retryable(error, actor_retryable=actor_retryable)
        return await self._fail(info, actor, stored, owner, policy, error, retryable=retryable)

    async def _acquire_slot(
        self,
        info: RecordInfo,
        envelope: MessageEnvelope,
        actor: ActorRecord,
        config: RunnerConfig,
        owner: str,
        lifespan: float,
    ) -> tuple[SlotLease, bool]:
        """Wait a little for one of the pool's ``max_runners`` slots; ``no_capacity`` while
        waiting. No slot within ``slot_wait_s``: the record goes back to the queue with a
        visibility (a Lambda never idles for minutes), its record saying why."""
        deps = self.deps
        lease_s = self._lease_s(lifespan)
        waited = 0
        waited_s = 0.0
        start = self._slot_base + self._slot_next[config.pool.id]
        self._slot_next[config.pool.id] += 1
        while True:
            lease = await self._io(
                deps.slots.acquire,
                config.pool.id,
                total=config.max_runners,
                owner=owner,
                lease_s=lease_s,
                now=deps.wall(),
                start=start,
            )
            if lease is not None:
                return lease, waited > 0
            if waited == 0:
                self.telemetry.count("NoCapacity")
                # Never mask a runner failure: only set when the actor has no reason yet.
                await asyncio.gather(
                    self._io(
                        deps.actors.set_failure_reason,
                        actor.actor_id,
                        NoCapacity(),
                        only_if_empty=True,
                    ),
                    self._io(
                        deps.messages.note_waiting,
                        envelope.actor_id,
                        envelope.message_id,
                        error=NoCapacity().to_json(),
                        now=deps.clock(),
                    ),
                )
            pause = min(deps.slot_poll_s * (1.5**waited), 2.0) * (0.5 + deps.rand() / 2)
            if waited_s + pause > deps.settings.slot_wait_s:
                raise KeepInQueue("handed_back", self._handback_s(info), "no runner slot free")
            if not self._fits(lifespan, extra_s=pause):
                raise KeepInQueue("handed_back", 0, "no runner slot before the deadline")
            waited += 1
            waited_s += pause
            await deps.sleep(pause)

    # --- outcomes --------------------------------------------------------------------------

    async def _commit(
        self,
        info: RecordInfo,
        actor: ActorRecord,
        stored: StoredMessage,
        owner: str,
        done: DoneFrame,
        slot: list[SlotLease],
        policy: ErrorPolicy,
    ) -> Outcome:
        deps = self.deps
        message = stored.record
        # What one item holds, checked before the write (docs/protocol.md, "Limits"): a done
        # that cannot be stored is the actor's typed error, never an infrastructure retry.
        try:
            sizes = {
                "state_bytes": len(stored_json(done.state)),
                "result_bytes": len(stored_json(done.output)),
                "input_bytes": len(stored_json(message.input)),
            }
        except ValueError:  # NaN/Infinity: the frame decoder refuses them; never store one
            error: Any = ServerlessInvalidPayload(
                message="done holds a non-finite number", raw_payload=""
            )
            return await self._fail(info, actor, stored, owner, policy, error, retryable=False)
        too_large = oversized_done(**sizes)
        if too_large is not None:
            await self._io(deps.actors.set_last_actor_error, actor.actor_id, too_large)
            return await self._fail(info, actor, stored, owner, policy, too_large, retryable=False)
        try:
            released = await self._io(
                deps.messages.commit_success,
                actor.actor_id,
                message.message_id,
                owner=owner,
                expected_version=actor.state_version,
                state=done.state,
                result=done.output,
                now=deps.clock(),
                slot=slot[0] if slot else None,
            )
        except ExecutionLeaseLostError as exc:
            return await self._not_committed(info, actor, stored, owner, exc)
        except CommitRefusedError as exc:
            # DynamoDB will refuse this write every time: final for the message (policy applies).
            error = CommitFailed(message=str(exc), aws_code=exc.aws_code)
            return await self._fail(info, actor, stored, owner, policy, error, retryable=False)
        except StoreCommitFailedError as exc:
            # The state moved on, or conflicts outlasted the bounded retry: another attempt
            # reads the new state; the policy bounds how many.
            self._event(exc, scope="handler", tags={"actor_id": actor.actor_id})
            error = CommitFailed(message=str(exc), retryable=True)
            return await self._fail(info, actor, stored, owner, policy, error, retryable=True)
        if released:
            slot.clear()
        if message.reply_to:
            # The committed record, built here rather than read back (one call fewer).
            committed = message.model_copy(
                update={
                    "status": "succeeded",
                    "result": done.output,
                    "error": None,
                    "disposition": None,
                    "next_attempt_at": None,
                }
            )
            await self._effects(StoredMessage(record=committed), info)
        return "succeeded"

    async def _not_committed(
        self,
        info: RecordInfo,
        actor: ActorRecord,
        stored: StoredMessage,
        owner: str,
        exc: ExecutionLeaseLostError,
    ) -> Outcome:
        """This execution lost the message: never commit twice, never lose the message."""
        deps = self.deps
        self._event(exc, scope="handler", tags={"actor_id": actor.actor_id, "sqs": info.message_id})
        now = await self._io(deps.messages.load, actor.actor_id, stored.record.message_id)
        if now is not None and now.record.status in TERMINAL_STATUSES:
            await self._effects(now, info)  # another delivery finished it
            return "duplicate"
        delay = infra_backoff_s(info.receive_count, rand=deps.rand())
        raise KeepInQueue("busy", max(1, visibility_timeout_s(delay)), str(exc))

    async def _fail(
        self,
        info: RecordInfo,
        actor: ActorRecord,
        stored: StoredMessage,
        owner: str,
        policy: ErrorPolicy,
        error: Any,
        *,
        retryable: bool,
        delay_s: float | None = None,
    ) -> Outcome:
        """Answer the three questions for a failed attempt and act on the answers."""
        deps = self.deps
        message = stored.record
        attempts = stored.budget_attempts
        decision = decide(policy, attempts=attempts, retryable=retryable, rand=deps.rand())
        self.telemetry.error_codes[error.code] += 1
        scope: Literal["actor", "pool"] = (
            "pool" if error.code.startswith("serverless_") or error.code == "internal_error"
            else "actor"
        )  # fmt: skip
        event = self._event(
            error,
            scope=scope,
            tags={
                "actor_id": actor.actor_id,
                "message_id": message.message_id,
                "pool": actor.pool.id,
            },
            context={
                "attempt": attempts,
                "max_attempts": policy.max_attempts,
                "decision": decision.message,
            },
        )
        deps.logger.warning(
            "execution failed",
            extra={
                "error": error.to_json(),
                "attempt": attempts,
                "decision": decision.message,
                "actor_fate": decision.actor,
            },
        )
        await self._io(
            deps.actors.append_errors, actor.actor_id, [event], cap=deps.settings.errors_cap
        )
        if scope == "pool" and not decision.final:
            # The actor's error rule (core.actor_status): a pending message whose start failed.
            await self._io(deps.actors.set_start_error, actor.actor_id, error)
        elif decision.final:  # nothing of this message is pending any more
            await self._io(deps.actors.set_start_error, actor.actor_id, None)
            await self._io(
                deps.actors.set_failure_reason, actor.actor_id, None, only_if_code="no_capacity"
            )
        now = deps.clock()
        if not decision.final:
            delay = decision.delay_s if delay_s is None else delay_s
            ok = await self._io(
                deps.messages.finish_failure,
                actor.actor_id,
                message.message_id,
                owner=owner,
                status="pending",
                error=error.to_json(),
                disposition="retry",
                now=now,
                next_attempt_at=now + timedelta(seconds=delay),
            )
            if not ok:
                return await self._not_committed(
                    info, actor, stored, owner, ExecutionLeaseLostError("lease lost before retry")
                )
            self.telemetry.count("RetriesScheduled")
            raise KeepInQueue("retry_scheduled", visibility_timeout_s(delay), error.code)

        if decision.actor == "stop":
            last = error if isinstance(error, ActorFailed) else None
            stop_error = PoolErrorView(error=error) if scope == "pool" else error
            await self._io(
                deps.actors.set_status,
                actor.actor_id,
                "stopped",
                last_actor_error=last,
                stop_error=stop_error,
            )
            self.telemetry.count("ActorsStopped")
        ok = await self._io(
            deps.messages.finish_failure,
            actor.actor_id,
            message.message_id,
            owner=owner,
            status=decision.status,
            error=error.to_json(),
            disposition=decision.message,
            now=now,
        )
        if not ok:
            return await self._not_committed(
                info, actor, stored, owner, ExecutionLeaseLostError("lease lost before finishing")
            )
        fresh = await self._io(deps.messages.load, actor.actor_id, message.message_id)
        if fresh is not None:
            await self._effects(fresh, info)
        if decision.actor == "stop":
            return "stopped"
        return "dead_lettered" if decision.status == "dead_lettered" else "failed"

    async def _give_up(self, info: RecordInfo, keep: KeepInQueue) -> Outcome:
        """The record was received nearly as often as the queue allows: dead-letter it here,
        with its own code on the record, instead of letting SQS move it unrecorded."""
        deps = self.deps
        try:
            envelope = MessageEnvelope.model_validate_json(info.body)
        except ValidationError:
            await self._dead_letter_raw(info, "receive_limit_reached")
            return "malformed"
        try:
            current = await self._io(deps.messages.load, envelope.actor_id, envelope.message_id)
            if current is None:
                return await self._missing(info, envelope)
            if current.record.status in TERMINAL_STATUSES:
                await self._effects(current, info)
                return "duplicate"
            error = ReceiveLimitReached(
                receive_count=info.receive_count,
                max_receive_count=deps.settings.max_receive_count,
                reason=keep.outcome,
                last_error=current.record.error,
            )
            fresh = await self._io(
                deps.messages.give_up,
                envelope.actor_id,
                envelope.message_id,
                error=error.to_json(),
                now=deps.clock(),
            )
            if fresh is None:
                # Final meanwhile, or a live execution holds it and will finish it: this copy
                # of the record has nothing left to do.
                return "duplicate"
            event = self._event(
                error,
                scope="actor",
                tags={"actor_id": envelope.actor_id, "message_id": envelope.message_id},
            )
            await self._io(
                deps.actors.append_errors, envelope.actor_id, [event], cap=deps.settings.errors_cap
            )
            await self._effects(fresh, info)
        except KeepInQueue:
            raise
        except Exception as exc:
            deps.logger.exception("giving up on a record failed", extra={"error": str(exc)})
            raise KeepInQueue("infra_error", 1, str(exc)) from exc
        self.telemetry.count("ReceiveLimitReached")
        return "dead_lettered"

    async def _refuse(
        self, info: RecordInfo, envelope: MessageEnvelope, actor: ActorRecord | None
    ) -> Outcome:
        """The actor is gone or stopped: the message fails without running (sender told)."""
        deps = self.deps
        owner = uuid.uuid4().hex
        claim = await self._io(
            deps.messages.claim,
            envelope.actor_id,
            envelope.message_id,
            owner=owner,
            lease_s=60.0,
            now=deps.clock(),
            count_attempt=False,
        )
        if claim.message is None:
            return await self._missing(info, envelope)
        if claim.outcome == "terminal":
            await self._effects(claim.message, info)
            return "duplicate"
        if claim.outcome == "busy":
            raise KeepInQueue("busy", 5, "another execution holds it")
        if actor is None:
            # The actor was deleted: the message is discarded, never run.
            error: Any = {
                "code": "actor_deleted",
                "message": f"actor {envelope.actor_id} was deleted; the message will not run",
            }
            disposition: Literal["discard", "stop"] = "discard"
            status: Literal["discarded", "pending"] = "discarded"
        else:
            # Held, not failed: it stays pending, out of the queue, until POST .../resume
            # queues it again (in order).
            error = actor.stop_error or actor.last_actor_error or actor.failure_reason
            error = (error or InternalError(message=f"actor {actor.actor_id} is stopped")).to_json()
            disposition = "stop"
            status = "pending"
        await self._io(
            deps.messages.finish_failure,
            envelope.actor_id,
            envelope.message_id,
            owner=owner,
            status=status,
            error=error,
            disposition=disposition,
            now=deps.clock(),
        )
        if status == "pending":
            now_actor = await self._io(deps.actors.get, envelope.actor_id)
            if now_actor is not None and now_actor.status != "stopped":
                # Resumed while we held it (after resume listed the held messages): run it.
                raise KeepInQueue("busy", 0, "actor resumed while its message was being held")
            return "stopped"
        fresh = await self._io(deps.messages.load, envelope.actor_id, envelope.message_id)
        if fresh is not None:
            await self._effects(fresh, info)
        return "failed"

    async def _malformed(self, info: RecordInfo, exc: ValidationError) -> Outcome:
        """A body that is not an envelope can never run: dead-letter it as is, alone."""
        self._event(
            InternalError(message=f"malformed actor message body: {exc.errors()[0]['msg']}"),
            scope="handler",
            tags={"sqs_message_id": info.message_id},
        )
        await self._dead_letter_raw(info, "malformed_envelope")
        return "malformed"

    async def _missing(self, info: RecordInfo, envelope: MessageEnvelope) -> Outcome:
        """No persisted message record anchors this execution: refuse it (dead-letter)."""
        error = MissingExecutionIdError(
            f"no message record {envelope.actor_id}/{envelope.message_id}; execution refused"
        )
        self._event(error, scope="handler", tags={"actor_id": envelope.actor_id})
        await self._dead_letter_raw(info, error.code)
        return "missing_execution_id"

    async def _dead_letter_raw(self, info: RecordInfo, code: str) -> None:
        if self.deps.dlq is None:
            raise KeepInQueue("infra_error", 60, "no DLQ configured for a record that cannot run")
        await self._io(
            self.deps.dlq.send,
            info.body,
            group_id=info.group_id or "malformed",
            dedup_id=info.message_id or uuid.uuid4().hex,
            error_code=code,
            attributes={"sqs_message_id": info.message_id},
        )
        self.telemetry.count("DeadLetters")

    async def _effects(self, stored: StoredMessage, info: RecordInfo) -> None:
        """The outbox: dead-letter and reply for a final message, each once it is marked."""
        deps = self.deps
        record = stored.record
        if record.status == "dead_lettered" and not stored.dlq_sent:
            if deps.dlq is None:
                raise KeepInQueue("infra_error", 60, "no DLQ configured")
            code = str((record.error or {}).get("code", "unknown"))
            await self._io(
                deps.dlq.send,
                dead_letter_body(record.actor_id, record.message_id, stored.retries, code),
                group_id=record.actor_id,
                # A retried message may dead-letter again within FIFO's 5-minute dedup window.
                dedup_id=(
                    record.message_id if not stored.retries
                    else f"{record.message_id}.r{stored.retries}"
                ),
                error_code=code,
                attributes={"attempts": str(record.attempts)},
            )  # fmt: skip
            await self._io(
                deps.messages.mark_effect,
                record.actor_id,
                record.message_id,
                "dlq",
                now=deps.clock(),
            )
            self.telemetry.count("DeadLetters")
        if record.reply_to and not stored.replied:
            try:
                await self._io(deps.replies.send, record.reply_to, reply_body(record))
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if code not in _PERMANENT_SQS_CODES:
                    raise
                # The reply queue will never take it: say so once, and stop trying.
                self._event(
                    InternalError(message=f"reply to {record.reply_to} refused: {code}"),
                    scope="handler",
                    tags={"actor_id": record.actor_id, "message_id": record.message_id},
                )
            await self._io(
                deps.messages.mark_effect,
                record.actor_id,
                record.message_id,
                "reply",
                now=deps.clock(),
            )
            self.telemetry.count("Replies")


@dataclass
class _RawRecord:
    """A raw SQS record dict in the shape ``record_info`` reads (``raw_event``)."""

    raw_event: Mapping[str, Any]


DEAD_LETTER_KEY: Final = "dead_letter"
"""Key of the mark a kit dead letter's body carries (the envelope ignores unknown keys)."""


def dead_letter_body(actor_id: str, message_id: str, retries: int, error_code: str) -> str:
    """The DLQ body of a kit dead letter: the envelope plus a mark, so an SQS redrive of it
    back to the inbox is told apart from a stale duplicate and runs again."""
    envelope = MessageEnvelope(actor_id=actor_id, message_id=message_id)
    mark = {"retries": retries, "error_code": error_code}
    return json.dumps({**envelope.model_dump(mode="json"), DEAD_LETTER_KEY: mark})


def _dead_letter_mark(body: str) -> dict[str, Any] | None:
    if DEAD_LETTER_KEY not in body:  # the common case costs a substring test
        return None
    try:
        mark = json.loads(body).get(DEAD_LETTER_KEY)
    except (ValueError, AttributeError):
        return None
    return mark if isinstance(mark, dict) else None
