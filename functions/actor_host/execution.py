"""One execution per SQS record: read, order guard, slot, claim, run, commit; a ``Verdict``.

What a verdict means for the record is ``functions.actor_host.batch``'s business; failed
attempts go to ``failures``, what a final message owes (dead letter, reply) to ``outbox``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError

from core.actor_status import ActorFacts
from core.errors import (
    ActorFailed,
    InternalError,
    RunnerNoResponse,
    ServerlessInvalidPayload,
    ServerlessStreamEndedEarly,
)
from core.events import ErrorsChannel
from core.exceptions import (
    CommitRefusedError,
    ExecutionLeaseLostError,
    RunnerError,
    RunnerNoResponseError,
    StoreCommitFailedError,
)
from core.execution import CommitFailed, oversized_done, stored_json
from core.models import (
    RETRYABLE_STATUSES,
    TERMINAL_STATUSES,
    ErrorPolicy,
    MessageEnvelope,
    RunnerConfig,
)
from core.policy import (
    effective_lifespan_s,
    fits_deadline,
    infra_backoff_s,
    is_retryable,
    visibility_timeout_s,
)
from core.ports import StoredMessage
from core.protocol import DoneFrame, ErrorFrame, InitFrame, StoppingFrame, start_body
from functions.actor_host.batch import (
    HELD_BACK,
    BatchReads,
    RecordInfo,
    Verdict,
    record_info,
)
from functions.actor_host.deps import HostDeps
from functions.actor_host.failures import Attempt, Failures
from functions.actor_host.outbox import NoDeadLetterQueueError, Outbox, dead_letter_mark
from functions.actor_host.slot import SlotHold, Slots
from functions.actor_host.telemetry import AttemptError, Telemetry


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
        self.reads = BatchReads(deps, prefetch or {})
        self.remaining_s = remaining_s
        self.telemetry = Telemetry(channel, deps.clock)
        self.outbox = Outbox(deps, self.telemetry)
        self.failures = Failures(deps, self.telemetry, self.outbox)
        self.runner = deps.runner()
        self.slots = Slots(deps, self.telemetry)

    async def aclose(self) -> None:
        """Close the invocation's runner client (on the loop that used it)."""
        close = getattr(self.runner, "aclose", None)
        if close is not None:
            await close()

    def _fits(self, lifespan_s: float, extra_s: float = 0.0) -> bool:
        return fits_deadline(
            self.remaining_s() - extra_s,
            margin_s=self.deps.settings.deadline_margin_s,
            lifespan_s=lifespan_s,
        )

    # --- the record's verdict --------------------------------------------------------------

    async def execute(self, raw: Mapping[str, Any]) -> Verdict:
        """Handle one SQS record; on the queue's last receives a kept record is given up here."""
        info = record_info(raw)
        verdict = await self._attempt(info)
        if verdict.kept and self.failures.last_receives(info):
            # The queue's redrive would take this record next: record the dead letter first.
            try:
                verdict = await self.failures.give_up(info, verdict.outcome)
            except NoDeadLetterQueueError as exc:
                return Verdict.keep("infra_error", 60, str(exc))
            if verdict.kept:
                return verdict  # counted when a later receive settles it
        self.telemetry.outcome(verdict.outcome)
        return verdict

    async def held_back(self, raw: Mapping[str, Any]) -> Verdict:
        """A record held back behind a kept one of its group, without running: it stays queued;
        on the queue's last receives it is dead-lettered here, recorded
        (``receive_limit_reached``), so SQS's redrive never takes it unrecorded."""
        info = record_info(raw)
        if not self.failures.last_receives(info):
            return HELD_BACK
        try:
            verdict = await self.failures.give_up(info, "held_back")
        except NoDeadLetterQueueError:
            return HELD_BACK
        if verdict.kept:
            return HELD_BACK
        self.telemetry.outcome(verdict.outcome)
        return verdict

    async def _attempt(self, info: RecordInfo) -> Verdict:
        try:
            return await self._execute(info)
        except NoDeadLetterQueueError as exc:
            return Verdict.keep("infra_error", 60, str(exc))
        except Exception as exc:
            # A store or network hiccup before anything was decided: back off and redeliver.
            self.deps.logger.exception("execution failed unexpectedly", extra={"error": str(exc)})
            self.telemetry.event(
                InternalError(message=f"{type(exc).__name__}: {exc}"),
                scope="handler",
                tags={"sqs_message_id": info.message_id},
            )
            delay = infra_backoff_s(info.receive_count, rand=self.deps.rand())
            return Verdict.keep("infra_error", visibility_timeout_s(delay), str(exc))

    # --- one execution ---------------------------------------------------------------------

    async def _execute(self, info: RecordInfo) -> Verdict:
        deps = self.deps
        try:
            envelope = MessageEnvelope.model_validate_json(info.body)
        except ValidationError as exc:
            return await self.failures.malformed(info, exc)
        deps.logger.thread_safe_append_keys(
            actor_id=envelope.actor_id, message_id=envelope.message_id
        )
        redrive = dead_letter_mark(info.body)
        if redrive is not None:
            await self._reopen_redriven(envelope, redrive)
        # No read of the message first: ``claim`` below tells a duplicate (terminal), a missing
        # record and a concurrent holder apart in the same write. The order guard's index read
        # runs beside the actor read.
        actor, oldest = await asyncio.gather(
            self.reads.actor(info.message_id, envelope.actor_id),
            deps.io(deps.messages.oldest_open, envelope.actor_id),
        )
        if actor is None or actor.status == "stopped":
            return await self.failures.refuse(info, envelope, actor)
        pool = actor.pool
        deps.logger.thread_safe_append_keys(pool=pool.id)
        config = await self.reads.config(pool)
        policy = actor.error_policy or (config.error_policy if config else ErrorPolicy())
        lifespan = self._lifespan(config)
        if not self._fits(lifespan):
            return Verdict.keep("handed_back", 0, "not enough time left before the deadline")
        if await self._earlier_open(envelope, oldest):
            return self.failures.hand_back(
                info, "out_of_order", "an earlier message of the actor is open"
            )

        owner = uuid.uuid4().hex
        hold = self.slots.hold(
            config,
            actor_id=envelope.actor_id,
            message_id=envelope.message_id,
            owner=owner,
            lease_s=self._lease_s(lifespan),
            fits=lambda pause_s: self._fits(lifespan, extra_s=pause_s),
        )
        async with hold as slot:
            if slot.refused == "no_slot":
                return self.failures.hand_back(info, "handed_back", "no runner slot free")
            if slot.refused == "deadline":
                return Verdict.keep("handed_back", 0, "no runner slot before the deadline")
            claim = await deps.io(
                deps.messages.claim,
                envelope.actor_id,
                envelope.message_id,
                owner=owner,
                lease_s=self._lease_s(lifespan),
                now=deps.clock.now(),
            )
            if claim.outcome == "terminal" and claim.message is not None:
                # A duplicate delivery: finish any outbox effect the first one left.
                await self.outbox.settle(claim.message)
                return Verdict("duplicate")
            if claim.outcome == "missing":
                return await self.failures.missing(info, envelope)
            if claim.outcome == "busy" or claim.message is None:
                return self.failures.busy(info, claim.message)
            attempt = Attempt(info, actor, claim.message, owner, policy)
            if config is None:
                error = InternalError(message=f"no runner config for pool {pool.id}")
                return await self.failures.fail(attempt, error, retryable=True)
            try:
                return await self._run(attempt, config, slot)
            except NoDeadLetterQueueError:
                raise  # the message is final already: nothing to release
            except Exception:
                # A store hiccup mid-execution: drop the lease so the redelivery is not "busy"
                # until it expires (a no-op if a final write already dropped it).
                with contextlib.suppress(Exception):
                    await deps.io(
                        deps.messages.release,
                        envelope.actor_id,
                        envelope.message_id,
                        owner=owner,
                        now=deps.clock.now(),
                    )
                raise

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
        earlier = await self.deps.io(self.deps.messages.load, envelope.actor_id, oldest[0])
        if earlier is None or earlier.record.status in TERMINAL_STATUSES:
            return False
        mine = await self.deps.io(self.deps.messages.load, envelope.actor_id, envelope.message_id)
        if mine is None or mine.record.status in TERMINAL_STATUSES or mine.open_key is None:
            return False
        return oldest[1] < mine.open_key

    async def _reopen_redriven(self, envelope: MessageEnvelope, mark: dict[str, Any]) -> None:
        """A kit dead letter moved back from the DLQ (an SQS redrive) runs again: its record
        is reopened with a fresh attempt budget, once per dead-letter generation."""
        deps = self.deps
        stored = await deps.io(deps.messages.load, envelope.actor_id, envelope.message_id)
        if stored is None or stored.record.status not in RETRYABLE_STATUSES:
            return
        if mark.get("retries", 0) != stored.retries:
            return  # a stale copy of an older dead letter
        now = deps.clock.now()
        await deps.io(deps.messages.reopen, envelope.actor_id, envelope.message_id, now=now)
        self.telemetry.count("Redriven")

    # --- the runner and the commit ---------------------------------------------------------

    async def _run(self, attempt: Attempt, config: RunnerConfig, slot: SlotHold) -> Verdict:
        deps = self.deps
        actor = attempt.actor
        pool = actor.pool
        message = attempt.stored.record
        lifespan = self._lifespan(config)
        # At init, forget what earlier executions left (start error, no_capacity,
        # runner_no_response, actor_failed): only when there is something to forget.
        clear_on_init = slot.waited or ActorFacts.of(actor).has_facts
        body = start_body(actor.actor_id, message.message_id, actor.state, message.input)
        started = deps.clock.monotonic()
        if lifespan < config.request_lifespan:  # the endpoint hears the lifespan it really has
            config = config.model_copy(update={"request_lifespan": int(lifespan)})
        runner_id: str | None = None
        final: DoneFrame | ErrorFrame | StoppingFrame | None = None
        error: AttemptError | None = None
        actor_retryable = True
        try:
            target = deps.target_for(config)
            async with self.runner.start(target, body, deadline=started + lifespan) as frames:
                async for frame in frames:
                    if isinstance(frame, InitFrame):
                        runner_id = frame.runner_id
                        init_ms = (deps.clock.monotonic() - started) * 1000.0
                        self.telemetry.time_to_init_ms.append(init_ms)
                        await self._on_init(attempt, runner_id, clear_on_init)
                    elif isinstance(frame, DoneFrame | ErrorFrame | StoppingFrame):
                        final = frame
                        break
        except RunnerError as exc:
            error = exc.error
            deps.logger.warning("runner start failed", extra={"error": error.to_json()})
            self.telemetry.count("PoolErrorsReported")
            await deps.io(deps.tracker.report_error, pool, error)
        except RunnerNoResponseError as exc:
            error = exc.reason
            await deps.io(deps.actors.set_failure_reason, actor.actor_id, exc.reason)
        except Exception as exc:  # a kit bug must not lose the message
            deps.logger.exception("runner call failed unexpectedly")
            error = InternalError(message=f"{type(exc).__name__}: {exc}")

        if error is None:
            if isinstance(final, DoneFrame):
                return await self._commit(attempt, final, slot)
            if isinstance(final, ErrorFrame):
                error = ActorFailed(error_code=final.code, message=final.message)
                actor_retryable = final.retryable
                await deps.io(deps.actors.set_last_actor_error, actor.actor_id, error)
            elif isinstance(final, StoppingFrame) and runner_id is not None:
                # A clean early end: the message did not run to completion; retried with the
                # policy's backoff like any failure (zero backoff burnt max_attempts in 0.4 s).
                error = RunnerNoResponse(runner_id=runner_id)
                return await self.failures.fail(attempt, error, retryable=True)
            elif runner_id is None:
                error = ServerlessStreamEndedEarly()
                await deps.io(deps.tracker.report_error, pool, error)
            else:
                error = RunnerNoResponse(runner_id=runner_id)
                await deps.io(deps.actors.set_failure_reason, actor.actor_id, error)
        retryable = is_retryable(error, actor_retryable=actor_retryable)
        return await self.failures.fail(attempt, error, retryable=retryable)

    async def _on_init(self, attempt: Attempt, runner_id: str, clear: bool) -> None:
        """The runner started: the pool is healthy, the message runs (and the actor's leftover
        facts go, when it has any)."""
        deps = self.deps
        actor = attempt.actor
        writes: list[Awaitable[Any]] = [deps.io(deps.tracker.report_success, actor.pool)]
        if clear:  # skip a no-op write
            writes.append(deps.io(deps.actors.clear_on_init, actor.actor_id))
        writes.append(
            deps.io(
                deps.messages.mark_running,
                actor.actor_id,
                attempt.stored.record.message_id,
                owner=attempt.owner,
                runner_id=runner_id,
                now=deps.clock.now(),
            )
        )
        await asyncio.gather(*writes)

    async def _commit(self, attempt: Attempt, done: DoneFrame, slot: SlotHold) -> Verdict:
        deps = self.deps
        actor = attempt.actor
        message = attempt.stored.record
        failures = self.failures
        # What one item holds, checked before the write (docs/protocol.md, "Limits"): a done
        # that cannot be stored is the actor's typed error, never an infrastructure retry.
        try:
            sizes = {
                "state_bytes": len(stored_json(done.state)),
                "result_bytes": len(stored_json(done.output)),
                "input_bytes": len(stored_json(message.input)),
            }
        except ValueError:  # NaN/Infinity: the frame decoder refuses them; never store one
            error = ServerlessInvalidPayload(
                message="done holds a non-finite number", raw_payload=""
            )
            return await failures.fail(attempt, error, retryable=False)
        too_large = oversized_done(**sizes)
        if too_large is not None:
            await deps.io(deps.actors.set_last_actor_error, actor.actor_id, too_large)
            return await failures.fail(attempt, too_large, retryable=False)
        try:
            released = await deps.io(
                deps.messages.commit_success,
                actor.actor_id,
                message.message_id,
                owner=attempt.owner,
                expected_version=actor.state_version,
                state=done.state,
                result=done.output,
                now=deps.clock.now(),
                slot=slot.lease,
            )
        except ExecutionLeaseLostError as exc:
            return await failures.not_committed(attempt, exc)
        except CommitRefusedError as exc:
            # DynamoDB will refuse this write every time: final for the message (policy applies).
            refused = CommitFailed(message=str(exc), aws_code=exc.aws_code)
            return await failures.fail(attempt, refused, retryable=False)
        except StoreCommitFailedError as exc:
            # The state moved on, or conflicts outlasted the bounded retry: another attempt
            # reads the new state; the policy bounds how many.
            self.telemetry.event(exc, scope="handler", tags={"actor_id": actor.actor_id})
            failed = CommitFailed(message=str(exc), retryable=True)
            return await failures.fail(attempt, failed, retryable=True)
        if released:
            slot.mark_released()
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
            await self.outbox.settle(StoredMessage(record=committed))
        return Verdict("succeeded")
