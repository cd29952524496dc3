"""Failed attempts and records that cannot run: the policy's decision, then the writes.

A failed attempt (``fail``) answers the policy's three questions (retry? the message's fate?
the actor's?) and writes the answers: the actor's error list and error rule, the message record,
then the outbox. The other paths here never run the message: the actor is gone or stopped
(``refuse``), the body is no envelope (``malformed``), no record anchors it (``missing``), or
the queue is about to move it on its own (``give_up``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, TypeGuard

from pydantic import JsonValue, ValidationError

from core.errors import (
    ActorError,
    ActorFailed,
    InternalError,
    OtherActorError,
    PoolErrorView,
    RunnerNoResponse,
    RunnerPoolError,
)
from core.exceptions import ExecutionLeaseLostError, MissingExecutionIdError
from core.execution import ReceiveLimitReached
from core.models import TERMINAL_STATUSES, ActorRecord, ErrorPolicy, MessageEnvelope
from core.policy import decide, infra_backoff_s, visibility_timeout_s
from core.ports import StoredMessage
from functions.actor_host.batch import Outcome, RecordInfo, Verdict
from functions.actor_host.deps import HostDeps
from functions.actor_host.outbox import NoDeadLetterQueueError, Outbox
from functions.actor_host.telemetry import AttemptError, Telemetry


@dataclass(frozen=True)
class Attempt:
    """One claimed attempt of a message: its SQS record, actor, stored message, the lease
    owner (this execution) and the error policy that applies."""

    info: RecordInfo
    actor: ActorRecord
    stored: StoredMessage
    owner: str
    policy: ErrorPolicy


def is_pool_error(error: AttemptError) -> TypeGuard[RunnerPoolError]:
    """Whether the pool's endpoint (or the kit starting it) failed, not the actor: the event's
    scope is ``pool`` and the actor shows it as its start error."""
    return isinstance(error, RunnerPoolError)


def _as_actor_error(error: AttemptError) -> ActorError:
    """What a stopped actor shows as its ``stop_error``."""
    if is_pool_error(error):
        return PoolErrorView(error=error)
    if isinstance(error, RunnerNoResponse | ActorFailed):
        return error
    # Not an API actor error type (a commit that failed): kept as a code readers do not know.
    return OtherActorError(data=error.to_json())


class Failures:
    """Writes what a failed or refused execution leaves, and returns its ``Verdict``."""

    def __init__(self, deps: HostDeps, telemetry: Telemetry, outbox: Outbox) -> None:
        self.deps = deps
        self.telemetry = telemetry
        self.outbox = outbox

    # --- not now: back to the queue -------------------------------------------------------

    def last_receives(self, info: RecordInfo) -> bool:
        """The queue's redrive takes a record received ``max_receive_count`` times; the host
        gives up one receive earlier, so a failed give-up still has a receive to finish it."""
        return info.receive_count >= self.deps.settings.max_receive_count - 1

    def busy(self, info: RecordInfo, held: StoredMessage | None) -> Verdict:
        """Another execution holds the message: visible again when that lease ends (a crashed
        holder's message runs as soon as it can), at least 1 s."""
        if held is None or held.lease_until is None:
            return self.hand_back(info, "busy", "another execution holds it")
        left = held.lease_until - self.deps.clock.now().timestamp()
        return Verdict.keep(
            "busy", max(1, visibility_timeout_s(left + 1.0)), "another execution holds it"
        )

    def hand_back(self, info: RecordInfo, outcome: Outcome, detail: str) -> Verdict:
        """Back to the queue for a while (no slot, an earlier message open): at least 1 s,
        growing with the receive count, so waiting never spins the queue."""
        delay = infra_backoff_s(info.receive_count, rand=self.deps.rand())
        return Verdict.keep(outcome, max(1, visibility_timeout_s(delay)), detail)

    # --- a failed attempt -----------------------------------------------------------------

    async def fail(self, attempt: Attempt, error: AttemptError, *, retryable: bool) -> Verdict:
        """Answer the three questions for a failed attempt and act on the answers."""
        deps = self.deps
        actor, stored, owner, policy = attempt.actor, attempt.stored, attempt.owner, attempt.policy
        message = stored.record
        attempts = stored.budget_attempts
        decision = decide(policy, attempts=attempts, retryable=retryable, rand=deps.rand())
        self.telemetry.error_codes[error.code] += 1
        pool_error = is_pool_error(error)
        event = self.telemetry.event(
            error,
            scope="pool" if pool_error else "actor",
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
        await deps.io(
            deps.actors.append_errors, actor.actor_id, [event], cap=deps.settings.errors_cap
        )
        if is_pool_error(error) and not decision.final:
            # The actor's error rule (core.actor_status): a pending message whose start failed.
            await deps.io(deps.actors.set_start_error, actor.actor_id, error)
        elif decision.final:  # nothing of this message is pending any more
            await deps.io(deps.actors.set_start_error, actor.actor_id, None)
            await deps.io(
                deps.actors.set_failure_reason, actor.actor_id, None, only_if_code="no_capacity"
            )
        now = deps.clock.now()
        if not decision.final:
            ok = await deps.io(
                deps.messages.finish_failure,
                actor.actor_id,
                message.message_id,
                owner=owner,
                status="pending",
                error=error.to_json(),
                disposition="retry",
                now=now,
                next_attempt_at=now + timedelta(seconds=decision.delay_s),
            )
            if not ok:
                lost = ExecutionLeaseLostError("lease lost before retry")
                return await self.not_committed(attempt, lost)
            self.telemetry.count("RetriesScheduled")
            visibility = visibility_timeout_s(decision.delay_s)
            return Verdict.keep("retry_scheduled", visibility, error.code)

        if decision.actor == "stop":
            await deps.io(
                deps.actors.set_status,
                actor.actor_id,
                "stopped",
                last_actor_error=error if isinstance(error, ActorFailed) else None,
                stop_error=_as_actor_error(error),
            )
            self.telemetry.count("ActorsStopped")
        ok = await deps.io(
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
            lost = ExecutionLeaseLostError("lease lost before finishing")
            return await self.not_committed(attempt, lost)
        if self.outbox.owes(decision.status, message.reply_to):  # else no read: nothing to send
            fresh = await deps.io(deps.messages.load, actor.actor_id, message.message_id)
            if fresh is not None:
                await self.outbox.settle(fresh)
        if decision.actor == "stop":
            return Verdict("stopped")
        return Verdict("dead_lettered" if decision.status == "dead_lettered" else "failed")

    async def not_committed(self, attempt: Attempt, exc: ExecutionLeaseLostError) -> Verdict:
        """This execution lost the message: never commit twice, never lose the message."""
        deps = self.deps
        info, actor_id = attempt.info, attempt.actor.actor_id
        self.telemetry.event(
            exc, scope="handler", tags={"actor_id": actor_id, "sqs": info.message_id}
        )
        now = await deps.io(deps.messages.load, actor_id, attempt.stored.record.message_id)
        if now is not None and now.record.status in TERMINAL_STATUSES:
            await self.outbox.settle(now)  # another delivery finished it
            return Verdict("duplicate")
        delay = infra_backoff_s(info.receive_count, rand=deps.rand())
        return Verdict.keep("busy", max(1, visibility_timeout_s(delay)), str(exc))

    async def give_up(self, info: RecordInfo, reason: Outcome) -> Verdict:
        """The record was received nearly as often as the queue allows: dead-letter it here,
        with its own code on the record, instead of letting SQS move it unrecorded."""
        deps = self.deps
        try:
            envelope = MessageEnvelope.model_validate_json(info.body)
        except ValidationError:
            await self.outbox.dead_letter_raw(info, "receive_limit_reached")
            return Verdict("malformed")
        try:
            current = await deps.io(deps.messages.load, envelope.actor_id, envelope.message_id)
            if current is None:
                return await self.missing(info, envelope)
            if current.record.status in TERMINAL_STATUSES:
                await self.outbox.settle(current)
                return Verdict("duplicate")
            error = ReceiveLimitReached(
                receive_count=info.receive_count,
                max_receive_count=deps.settings.max_receive_count,
                reason=reason,
                last_error=current.record.error,
            )
            fresh = await deps.io(
                deps.messages.give_up,
                envelope.actor_id,
                envelope.message_id,
                error=error.to_json(),
                now=deps.clock.now(),
            )
            if fresh is None:
                # Final meanwhile, or a live execution holds it and will finish it: this copy
                # of the record has nothing left to do.
                return Verdict("duplicate")
            event = self.telemetry.event(
                error,
                scope="actor",
                tags={"actor_id": envelope.actor_id, "message_id": envelope.message_id},
            )
            await deps.io(
                deps.actors.append_errors, envelope.actor_id, [event], cap=deps.settings.errors_cap
            )
            await self.outbox.settle(fresh)
        except NoDeadLetterQueueError:
            raise
        except Exception as exc:
            deps.logger.exception("giving up on a record failed", extra={"error": str(exc)})
            return Verdict.keep("infra_error", 1, str(exc))
        self.telemetry.count("ReceiveLimitReached")
        return Verdict("dead_lettered")

    async def refuse(
        self, info: RecordInfo, envelope: MessageEnvelope, actor: ActorRecord | None
    ) -> Verdict:
        """The actor is gone or stopped: the message fails without running (sender told)."""
        deps = self.deps
        owner = uuid.uuid4().hex
        claim = await deps.io(
            deps.messages.claim,
            envelope.actor_id,
            envelope.message_id,
            owner=owner,
            lease_s=60.0,
            now=deps.clock.now(),
            count_attempt=False,
        )
        if claim.message is None:
            return await self.missing(info, envelope)
        if claim.outcome == "terminal":
            await self.outbox.settle(claim.message)
            return Verdict("duplicate")
        if claim.outcome == "busy":
            return Verdict.keep("busy", 5, "another execution holds it")
        error: dict[str, JsonValue]
        disposition: Literal["discard", "stop"]
        status: Literal["discarded", "pending"]
        if actor is None:
            # The actor was deleted: the message is discarded, never run.
            error = {
                "code": "actor_deleted",
                "message": f"actor {envelope.actor_id} was deleted; the message will not run",
            }
            disposition, status = "discard", "discarded"
        else:
            # Held, not failed: it stays pending, out of the queue, until POST .../resume
            # queues it again (in order).
            why = actor.stop_error or actor.last_actor_error or actor.failure_reason
            error = (why or InternalError(message=f"actor {actor.actor_id} is stopped")).to_json()
            disposition, status = "stop", "pending"
        await deps.io(
            deps.messages.finish_failure,
            envelope.actor_id,
            envelope.message_id,
            owner=owner,
            status=status,
            error=error,
            disposition=disposition,
            now=deps.clock.now(),
        )
        if status == "pending":
            now_actor = await deps.io(deps.actors.get, envelope.actor_id)
            if now_actor is not None and now_actor.status != "stopped":
                # Resumed while we held it (after resume listed the held messages): run it.
                return Verdict.keep("busy", 0, "actor resumed while its message was being held")
            return Verdict("stopped")
        if self.outbox.owes(status, claim.message.record.reply_to):
            fresh = await deps.io(deps.messages.load, envelope.actor_id, envelope.message_id)
            if fresh is not None:
                await self.outbox.settle(fresh)
        return Verdict("failed")

    async def malformed(self, info: RecordInfo, exc: ValidationError) -> Verdict:
        """A body that is not an envelope can never run: dead-letter it as is, alone."""
        self.telemetry.event(
            InternalError(message=f"malformed actor message body: {exc.errors()[0]['msg']}"),
            scope="handler",
            tags={"sqs_message_id": info.message_id},
        )
        await self.outbox.dead_letter_raw(info, "malformed_envelope")
        return Verdict("malformed")

    async def missing(self, info: RecordInfo, envelope: MessageEnvelope) -> Verdict:
        """No persisted message record anchors this execution: refuse it (dead-letter)."""
        error = MissingExecutionIdError(
            f"no message record {envelope.actor_id}/{envelope.message_id}; execution refused"
        )
        self.telemetry.event(error, scope="handler", tags={"actor_id": envelope.actor_id})
        await self.outbox.dead_letter_raw(info, error.code)
        return Verdict("missing_execution_id")
