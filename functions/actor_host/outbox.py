"""The outbox of a final message: its dead letter and its reply, each sent once it is marked.

A final record says what is still owed (``dlq_sent``, ``replied``); a duplicate delivery of
the message finishes what the first one left. Records that can never run are dead-lettered as
they came (``dead_letter_raw``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Final

from adapters.sqs import ReplyRefusedError
from core.errors import InternalError
from core.execution import reply_body
from core.models import MessageEnvelope
from core.ports import Effect, StoredMessage
from functions.actor_host.batch import RecordInfo
from functions.actor_host.deps import HostDeps
from functions.actor_host.telemetry import Telemetry

DEAD_LETTER_KEY: Final = "dead_letter"
"""Key of the mark a kit dead letter's body carries (the envelope ignores unknown keys)."""


class NoDeadLetterQueueError(Exception):
    """A record must be dead-lettered but no DLQ is configured (kept in the queue meanwhile)."""


def dead_letter_body(actor_id: str, message_id: str, retries: int, error_code: str) -> str:
    """The DLQ body of a kit dead letter: the envelope plus a mark, so an SQS redrive of it
    back to the inbox is told apart from a stale duplicate and runs again."""
    envelope = MessageEnvelope(actor_id=actor_id, message_id=message_id)
    mark = {"retries": retries, "error_code": error_code}
    return json.dumps({**envelope.model_dump(mode="json"), DEAD_LETTER_KEY: mark})


def dead_letter_mark(body: str) -> dict[str, Any] | None:
    """The mark of a kit dead letter redriven to the inbox; ``None`` for any other body."""
    if DEAD_LETTER_KEY not in body:  # the common case costs a substring test
        return None
    try:
        mark = json.loads(body).get(DEAD_LETTER_KEY)
    except (ValueError, AttributeError):
        return None
    return mark if isinstance(mark, dict) else None


class Outbox:
    """Sends what final messages owe (dead letters, replies) and marks each as sent."""

    def __init__(self, deps: HostDeps, telemetry: Telemetry) -> None:
        self.deps = deps
        self.telemetry = telemetry

    @staticmethod
    def owes(status: str, reply_to: str | None) -> bool:
        """Whether a message that just became final (``status``) has a side effect to send."""
        return status == "dead_lettered" or bool(reply_to)

    async def settle(self, stored: StoredMessage) -> None:
        """Dead-letter and reply for a final message, each unless already marked."""
        deps = self.deps
        record = stored.record
        if record.status == "dead_lettered" and not stored.dlq_sent:
            if deps.dlq is None:
                raise NoDeadLetterQueueError("no DLQ configured")
            code = str((record.error or {}).get("code", "unknown"))
            await deps.io(
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
            await self._mark(stored, "dlq")
            self.telemetry.count("DeadLetters")
        if record.reply_to and not stored.replied:
            try:
                await deps.io(deps.replies.send, record.reply_to, reply_body(record))
            except ReplyRefusedError as exc:
                # The reply queue will never take it: say so once, and stop trying.
                self.telemetry.event(
                    InternalError(message=str(exc)),
                    scope="handler",
                    tags={"actor_id": record.actor_id, "message_id": record.message_id},
                )
            await self._mark(stored, "reply")
            self.telemetry.count("Replies")

    async def _mark(self, stored: StoredMessage, effect: Effect) -> None:
        record = stored.record
        await self.deps.io(
            self.deps.messages.mark_effect,
            record.actor_id,
            record.message_id,
            effect,
            now=self.deps.clock.now(),
        )

    async def dead_letter_raw(self, info: RecordInfo, code: str) -> None:
        """Dead-letter a record that can never run as it came (its body unchanged), alone."""
        if self.deps.dlq is None:
            raise NoDeadLetterQueueError("no DLQ configured for a record that cannot run")
        await self.deps.io(
            self.deps.dlq.send,
            info.body,
            group_id=info.group_id or "malformed",
            dedup_id=info.message_id or uuid.uuid4().hex,
            error_code=code,
            attributes={"sqs_message_id": info.message_id},
        )
        self.telemetry.count("DeadLetters")
