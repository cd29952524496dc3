"""Pure decisions of one execution: does its answer fit what one DynamoDB item holds, and what
the sender hears (whether it may start is ``core.policy.fits_deadline``).

It also holds the host's own message-level errors (``receive_limit_reached`` and the commit's
``store_commit_failed``): values written to a message record's ``error``, shaped like every
typed error (``{"code": ..., <fields>}``), that are neither pool errors nor actor errors.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from core.errors import ActorFailed, ErrorText
from core.models import MessageRecord

ITEM_LIMIT_BYTES: Final = 400 * 1024
"""DynamoDB's item size limit (attribute names and values together)."""

MAX_STATE_BYTES: Final = 320 * 1024
"""An actor's ``state`` as stored (compact JSON): the rest of the item keeps the capped error
events, the failure reason and the bookkeeping (docs/protocol.md, "Limits")."""

MESSAGE_ITEM_RESERVE_BYTES: Final = 16 * 1024
"""What a message item keeps beside ``input`` and ``result``: the typed error, timestamps,
lease and outbox marks, index keys."""

STATE_TOO_LARGE: Final = "state_too_large"
RESULT_TOO_LARGE: Final = "result_too_large"


def stored_json(value: JsonValue) -> str:
    """A JSON value as the stores write it (compact, ASCII); ``ValueError`` for NaN/Infinity."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def oversized_done(*, state_bytes: int, result_bytes: int, input_bytes: int) -> ActorFailed | None:
    """The typed actor error for a ``done`` whose state or result cannot be stored, else None.

    Sizes are of the stored JSON text (``stored_json``). The state must fit the actor item
    (``MAX_STATE_BYTES``); the result must fit the message item beside its input.
    """
    if state_bytes > MAX_STATE_BYTES:
        return ActorFailed(
            error_code=STATE_TOO_LARGE,
            message=(
                f"done.state is {state_bytes} bytes as stored; an actor's state holds at most "
                f"{MAX_STATE_BYTES}"
            ),
        )
    room = ITEM_LIMIT_BYTES - MESSAGE_ITEM_RESERVE_BYTES - input_bytes
    if result_bytes > room:
        return ActorFailed(
            error_code=RESULT_TOO_LARGE,
            message=(
                f"done.output is {result_bytes} bytes as stored; beside this message's "
                f"{input_bytes}-byte input the record holds at most {max(room, 0)}"
            ),
        )
    return None


class _MessageError(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> dict[str, JsonValue]:
        """The wire form: ``{"code": ..., <fields>}`` (unset optional fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class ReceiveLimitReached(_MessageError):
    """The queue was about to dead-letter this record on its own (``maxReceiveCount``)."""

    code: Literal["receive_limit_reached"] = "receive_limit_reached"
    receive_count: int
    max_receive_count: int
    reason: str
    """Why the last receive did not finish it (``handed_back``, ``busy``, ``infra_error``...)."""
    last_error: dict[str, JsonValue] | None = None

    @property
    def summary(self) -> str:
        return (
            f"received {self.receive_count} times (queue limit {self.max_receive_count}); "
            f"last: {self.reason}"
        )


class CommitFailed(_MessageError):
    """The commit was not written: refused for good (``ValidationException``, not retryable) or
    cancelled again and again (a version that moved, conflicts: retryable)."""

    code: Literal["store_commit_failed"] = "store_commit_failed"
    message: ErrorText
    aws_code: str | None = None
    retryable: bool = False

    @property
    def summary(self) -> str:
        return self.message


def reply_body(record: MessageRecord) -> dict[str, JsonValue]:
    """What a ``reply_to`` queue receives once a message reaches a final status."""
    body: dict[str, Any] = {
        "v": 1,
        "actor_id": record.actor_id,
        "message_id": record.message_id,
        "status": record.status,
        "attempts": record.attempts,
    }
    if record.status == "succeeded":
        body["result"] = record.result
    else:
        body["error"] = record.error
        body["disposition"] = record.disposition
    return body
