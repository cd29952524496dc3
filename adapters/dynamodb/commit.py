"""The three-table commit of an execution's success, as one unit of work.

One ``TransactWriteItems`` writes the message's result (if this execution still holds it), the
actor's new state and ``state_version + 1`` (if still at the version the execution read) and,
when the store knows the slots table, the release of the execution's slot (if still its own).
``DynamoDBCommit`` builds the three items, runs them and reads DynamoDB's answer:

- ``TransactionConflict`` (another write to one of the items was in flight; the actor item takes
  telemetry writes concurrently): try again after ``core.policy.backoff_s``, ``CONFLICT_TRIES``
  attempts in all;
- only the slot's condition failed (our lease on it ran out): commit without it (``False``);
- the message's condition failed: ``ExecutionLeaseLostError``; the actor's:
  ``StoreCommitFailedError``;
- ``ValidationException`` / a ``ValidationError`` reason (e.g. an item too large):
  ``CommitRefusedError``, final for the message.

``adapters.memory.messages`` runs the same unit on dict items under one lock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Protocol

from pydantic import JsonValue

from adapters.aws import error_code
from adapters.dynamodb.expressions import Item, Op, Write, eq
from adapters.dynamodb.items import (
    FINAL_REMOVES,
    NOT_FINAL,
    final_fields,
    held_by,
    json_attr,
    message_key,
)
from adapters.dynamodb.slots import slot_held, slot_key
from core.exceptions import CommitRefusedError, ExecutionLeaseLostError, StoreCommitFailedError
from core.policy import backoff_s
from core.ports import SlotLease
from core.times import format_time

CONFLICT_TRIES: Final = 4
"""Commit attempts when DynamoDB cancels with ``TransactionConflict`` (a concurrent write)."""
CONFLICT_BASE_S: Final = 0.02
CONFLICT_MAX_S: Final = 1.0


class CommitCancelledError(Exception):
    """The transaction was cancelled: one reason per item (``"None"`` where it was fine)."""

    def __init__(self, reasons: Sequence[str | None]) -> None:
        super().__init__(f"commit cancelled: {list(reasons)}")
        self.reasons = list(reasons)


def actor_write(*, expected_version: int, state: JsonValue, now: datetime) -> Write:
    """The actor half: new state and version, if still at ``expected_version``; clears the
    failure reason and start error (the actor just ran fine). Never touches ``extra``."""
    return Write(
        set={"state": json_attr(state), "updated_at": {"S": format_time(now)}},
        add={"state_version": 1},
        remove=("failure_reason", "failure_code", "start_error"),
        when=eq("state_version", {"N": str(expected_version)}),
    )


def message_write(
    *, owner: str, result: JsonValue, now: datetime, retention_s: float | None
) -> Write:
    """The message half: ``succeeded`` with its result, if ``owner`` still holds it."""
    return Write(
        set={
            "status": {"S": "succeeded"},
            "result": json_attr(result),
            "updated_at": {"S": format_time(now)},
            **final_fields(now, retention_s),
        },
        remove=("lease_owner", "lease_until", "error", "disposition", *FINAL_REMOVES),
        when=held_by(owner) & NOT_FINAL,
    )


class _Store(Protocol):
    """What the commit needs of each store: its transaction items."""

    def op(self, key: Item, write: Write, *, delete: bool = False) -> Op:
        """``write`` on the item ``key`` of the store's table, as a transaction item."""


class _MessageStore(_Store, Protocol):
    retention_s: float | None
    """Kept by final records for this long (TTL), if set."""

    @property
    def client(self) -> Any:
        """The boto3 client the transaction runs on."""


@dataclass(frozen=True)
class Success:
    """What a successful execution commits: its result and the actor's next state."""

    actor_id: str
    message_id: str
    owner: str
    expected_version: int
    """The ``state_version`` the execution read."""
    state: JsonValue
    result: JsonValue
    now: datetime
    slot: SlotLease | None = None
    """The execution's slot, released in the same write."""


@dataclass(frozen=True)
class DynamoDBCommit:
    """The commit of ``messages`` (with ``actors`` and, if given, ``slots``)."""

    messages: _MessageStore
    actors: _Store
    slots: _Store | None
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random

    def run(self, success: Success) -> bool:
        """Commit; ``True`` if ``success.slot`` was released too (see the module docstring)."""
        s = success
        actor_op = self.actors.op(
            {"actor_id": {"S": s.actor_id}},
            actor_write(expected_version=s.expected_version, state=s.state, now=s.now),
        )
        message_op = self.messages.op(
            message_key(s.actor_id, s.message_id),
            message_write(
                owner=s.owner, result=s.result, now=s.now, retention_s=self.messages.retention_s
            ),
        )
        items: list[dict[str, Op]] = [{"Update": actor_op}, {"Update": message_op}]
        release = s.slot is not None and self.slots is not None
        if s.slot is not None and self.slots is not None:
            release_op = self.slots.op(slot_key(s.slot), Write(when=slot_held(s.slot)), delete=True)
            items.append({"Delete": release_op})
        for attempt in range(1, CONFLICT_TRIES + 1):
            try:
                self._transact(items)
                return release
            except CommitCancelledError as exc:
                reasons = exc.reasons
                if "ValidationError" in reasons:
                    raise CommitRefusedError(
                        f"commit refused: {reasons}", "ValidationError"
                    ) from exc
                if "TransactionConflict" in reasons and attempt < CONFLICT_TRIES:
                    # DynamoDB asks to try again shortly; at least half the backoff, so the
                    # retries of two conflicting commits spread out.
                    rand = 0.5 + self.rand() / 2
                    self.sleep(
                        backoff_s(attempt, base_s=CONFLICT_BASE_S, max_s=CONFLICT_MAX_S, rand=rand)
                    )
                    continue
                if (
                    release
                    and reasons[:2] == ["None", "None"]
                    and "TransactionConflict" not in reasons
                ):
                    # Only the slot moved on (our lease on it ran out): commit without it.
                    return self.run(replace(s, slot=None))
                if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                    raise ExecutionLeaseLostError(
                        f"message {s.actor_id}/{s.message_id} is no longer held by this execution"
                    ) from exc
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    raise StoreCommitFailedError(
                        f"actor {s.actor_id} is no longer at state_version {s.expected_version}"
                    ) from exc
                raise StoreCommitFailedError(f"commit cancelled: {reasons}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _transact(self, items: list[dict[str, Op]]) -> None:
        """Run the items as one TransactWriteItems; a cancellation as ``CommitCancelledError``."""
        rendered = [{kind: op.render() for kind, op in item.items()} for item in items]
        try:
            self.messages.client.transact_write_items(TransactItems=rendered)
        except Exception as exc:
            code = error_code(exc)
            if code == "ValidationException":
                raise CommitRefusedError(f"commit refused: {exc}", code) from exc
            if code != "TransactionCanceledException":
                raise StoreCommitFailedError(f"commit failed: {exc}") from exc
            cancelled = getattr(exc, "response", {}).get("CancellationReasons", [])
            raise CommitCancelledError([r.get("Code") for r in cancelled]) from exc
