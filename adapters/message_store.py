"""Where messages live: one ``Protocol``, a DynamoDB store and an in-memory store.

Item shape (``MessagesTable``, hash ``actor_id``, range ``message_id``, GSI ``by_status``):
``status`` and ``updated_at`` (fixed-width ISO-8601 UTC, so they sort) for the index; JSON text
for ``input``/``result``/``error``; plus the execution's bookkeeping, which is not part of
``MessageRecord``:

- ``lease_owner``/``lease_until`` (epoch s): the execution that holds the message. ``claim``
  takes it only when nobody holds it or the holder's lease ran out (a crashed Lambda), so a
  duplicate delivery cannot run next to the original (``execution_busy``), and a commit whose
  lease was taken over is refused (``execution_lease_lost``).
- ``dlq_sent_at``/``replied_at``: an outbox. The final status is written first, then the DLQ
  send and the reply happen and are marked; a redelivery of a final message finishes whatever
  side effect is not marked yet, so nothing is lost and, once marked, nothing is sent twice.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, runtime_checkable

from pydantic import JsonValue

from adapters.actor_store import (
    DynamoDBActorStore,
    InMemoryActorStore,
    decode_fields,
    encode_fields,
    iso,
    json_attr,
    with_timestamps,
)
from adapters.aws import LazyClient, error_code, is_conditional_check_failed
from adapters.settings import in_lambda as _in_lambda
from adapters.slots import DynamoDBSlotStore, InMemorySlotStore, SlotLease
from core.errors import DurableStoreRequiredError, ExecutionLeaseLostError, StoreCommitFailedError
from core.models import TERMINAL_STATUSES, MessageRecord, MessageStatus


def encode_message_cursor(record: MessageRecord) -> str:
    """An opaque page cursor (same style as the actor list's): the last message of the page."""
    created = iso(record.created_at) if record.created_at else ""
    raw = json.dumps({"c": created, "m": record.message_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_message_cursor(cursor: str) -> tuple[str, str]:
    """Inverse of ``encode_message_cursor``: ``(created_at, message_id)``; ``ValueError`` if bad."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("c"), str)
        or not isinstance(doc.get("m"), str)
        or not doc["m"]
    ):
        raise ValueError("malformed cursor")
    return doc["c"], doc["m"]


Effect = Literal["dlq", "reply"]
ClaimOutcome = Literal["claimed", "missing", "terminal", "busy"]
Disposition = Literal["retry", "discard", "dead_letter", "stop"]

_EFFECT_ATTR: Final[dict[str, str]] = {"dlq": "dlq_sent_at", "reply": "replied_at"}
_JSON_FIELDS: Final = ("input", "result", "error")
_TEXT_FIELDS: Final = ("disposition", "runner_id", "reply_to")
_TIME_FIELDS: Final = ("created_at", "updated_at", "started_at", "finished_at", "next_attempt_at")


@dataclass(frozen=True)
class StoredMessage:
    """A message record plus the execution bookkeeping kept beside it."""

    record: MessageRecord
    lease_owner: str | None = None
    lease_until: float | None = None
    dlq_sent: bool = False
    replied: bool = False


@dataclass(frozen=True)
class Claim:
    """The result of ``claim``: ``claimed`` (with the record as it now is) or why not."""

    outcome: ClaimOutcome
    message: StoredMessage | None = None


@runtime_checkable
class MessageStore(Protocol):
    """Messages by ``(actor_id, message_id)``, and executions' writes to them."""

    def create(self, message: MessageRecord) -> MessageRecord:
        """Store a new message; if it exists already, return the stored one (idempotent)."""

    def get(self, actor_id: str, message_id: str) -> MessageRecord | None:
        """The message, or ``None``."""

    def list_running(self, older_than: datetime, limit: int = 100) -> list[MessageRecord]:
        """Messages with status ``running`` last updated before ``older_than``, oldest first."""

    def list_for_actor(
        self,
        actor_id: str,
        *,
        status: MessageStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[list[MessageRecord], str | None]:
        """A page of the actor's messages by ``created_at`` (newest first unless
        ``oldest_first``), optionally of one ``status``, and the next page's cursor."""

    def discard(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> bool:
        """A message that is not final and not held by an execution ends ``discarded``
        (disposition ``discard``); ``False`` if it is final or held."""

    def load(self, actor_id: str, message_id: str) -> StoredMessage | None:
        """The message with its lease and outbox marks."""

    def claim(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        lease_s: float,
        now: datetime,
        count_attempt: bool = True,
    ) -> Claim:
        """Take the message's lease for ``lease_s`` and count an attempt."""

    def mark_running(
        self, actor_id: str, message_id: str, *, owner: str, runner_id: str, now: datetime
    ) -> bool:
        """Status ``running`` on ``runner_id`` (after ``init``); ``False`` if the lease is lost."""

    def finish_failure(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        status: MessageStatus,
        error: dict[str, JsonValue] | None,
        disposition: Disposition,
        now: datetime,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """Record a failed attempt's outcome and drop the lease; ``False`` if the lease is lost."""

    def release(self, actor_id: str, message_id: str, *, owner: str, now: datetime) -> None:
        """Drop the lease; a held, unfinished message goes back to ``pending`` (handed back)."""

    def commit_success(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        expected_version: int,
        state: JsonValue,
        result: JsonValue,
        now: datetime,
        slot: SlotLease | None = None,
    ) -> bool:
        """Atomically: the actor's new state (if still at ``expected_version``) and the result;
        and, when the store knows the slots table, the release of ``slot`` in the same write.

        Returns ``True`` if ``slot`` was released too. Raises ``ExecutionLeaseLostError`` if this
        execution no longer holds the message (or it is final already) and
        ``StoreCommitFailedError`` if the actor's state moved on.
        """

    def mark_effect(self, actor_id: str, message_id: str, effect: Effect, *, now: datetime) -> None:
        """Mark an outbox side effect (``dlq`` or ``reply``) as done."""


# --- item codec ----------------------------------------------------------------------------


def message_to_item(message: MessageRecord) -> dict[str, Any]:
    """MessageRecord -> low-level DynamoDB item."""
    doc = message.model_dump(mode="json")
    item: dict[str, Any] = {
        "actor_id": {"S": message.actor_id},
        "message_id": {"S": message.message_id},
        "status": {"S": message.status},
        "attempts": {"N": str(message.attempts)},
    }
    for name in _TEXT_FIELDS:
        if doc.get(name) is not None:
            item[name] = {"S": doc[name]}
    encode_fields(item, message, doc, json_fields=_JSON_FIELDS, time_fields=_TIME_FIELDS)
    return item


def stored_from_item(item: dict[str, Any]) -> StoredMessage:
    """Low-level DynamoDB item -> StoredMessage."""
    doc: dict[str, Any] = {
        "actor_id": item["actor_id"]["S"],
        "message_id": item["message_id"]["S"],
        "status": item["status"]["S"],
        "attempts": int(item.get("attempts", {"N": "0"})["N"]),
    }
    for name in _TEXT_FIELDS:
        if name in item:
            doc[name] = item[name]["S"]
    decode_fields(doc, item, json_fields=_JSON_FIELDS, time_fields=_TIME_FIELDS)
    return StoredMessage(
        record=MessageRecord.model_validate(doc),
        lease_owner=item["lease_owner"]["S"] if "lease_owner" in item else None,
        lease_until=float(item["lease_until"]["N"]) if "lease_until" in item else None,
        dlq_sent="dlq_sent_at" in item,
        replied="replied_at" in item,
    )


def _lease_lost(actor_id: str, message_id: str) -> ExecutionLeaseLostError:
    return ExecutionLeaseLostError(
        f"message {actor_id}/{message_id} is no longer held by this execution"
    )


def _version_moved(actor_id: str, expected_version: int) -> StoreCommitFailedError:
    return StoreCommitFailedError(
        f"actor {actor_id} is no longer at state_version {expected_version}"
    )


_TERMINAL_VALUES: Final = {f":t{i}": {"S": s} for i, s in enumerate(sorted(TERMINAL_STATUSES))}
_NOT_TERMINAL: Final = f"NOT #st IN ({', '.join(_TERMINAL_VALUES)})"


class DynamoDBMessageStore(LazyClient):
    """``MessagesTable`` through the low-level boto3 client.

    ``actors`` (the actors table) is needed only by ``commit_success``, whose one
    TransactWriteItems spans both tables (and the slots table when ``slots`` is given).
    """

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        *,
        actors: DynamoDBActorStore | None = None,
        slots: DynamoDBSlotStore | None = None,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self.actors = actors
        self.slots = slots

    @staticmethod
    def _key(actor_id: str, message_id: str) -> dict[str, Any]:
        return {"actor_id": {"S": actor_id}, "message_id": {"S": message_id}}

    def create(self, message: MessageRecord) -> MessageRecord:
        message = with_timestamps(message, datetime.now(UTC))
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=message_to_item(message),
                ConditionExpression="attribute_not_exists(message_id)",
            )
        except Exception as exc:
            if not is_conditional_check_failed(exc):
                raise
            existing = self.get(message.actor_id, message.message_id)
            if existing is None:  # deleted in between: try once more
                return self.create(message)
            return existing
        return message

    def load(self, actor_id: str, message_id: str) -> StoredMessage | None:
        resp = self.client.get_item(
            TableName=self.table_name, Key=self._key(actor_id, message_id), ConsistentRead=True
        )
        item = resp.get("Item")
        return stored_from_item(item) if item else None

    def get(self, actor_id: str, message_id: str) -> MessageRecord | None:
        stored = self.load(actor_id, message_id)
        return stored.record if stored else None

    def list_running(self, older_than: datetime, limit: int = 100) -> list[MessageRecord]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": "by_status",
            "KeyConditionExpression": "#st = :running AND updated_at < :t",
            "ExpressionAttributeNames": {"#st": "status"},
            "ExpressionAttributeValues": {
                ":running": {"S": "running"},
                ":t": {"S": iso(older_than)},
            },
            "Limit": max(1, limit),
        }
        out: list[MessageRecord] = []
        while len(out) < limit:
            resp = self.client.query(**kwargs)
            out.extend(stored_from_item(item).record for item in resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if not last:
                break
            kwargs["ExclusiveStartKey"] = last
        return out[:limit]

    def list_for_actor(
        self,
        actor_id: str,
        *,
        status: MessageStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[list[MessageRecord], str | None]:
        limit = max(1, min(limit, 1000))
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": "by_actor",
            "KeyConditionExpression": "actor_id = :a",
            "ExpressionAttributeValues": {":a": {"S": actor_id}},
            "ScanIndexForward": oldest_first,
            "Limit": limit,
        }
        if status is not None:
            kwargs["FilterExpression"] = "#st = :st"
            kwargs["ExpressionAttributeNames"] = {"#st": "status"}
            kwargs["ExpressionAttributeValues"][":st"] = {"S": status}
        if cursor:
            created, message_id = decode_message_cursor(cursor)
            kwargs["ExclusiveStartKey"] = {
                "actor_id": {"S": actor_id},
                "message_id": {"S": message_id},
                "created_at": {"S": created},
            }
        out: list[MessageRecord] = []
        while True:
            resp = self.client.query(**kwargs)
            items = resp.get("Items", [])
            last = resp.get("LastEvaluatedKey")
            for n, item in enumerate(items):
                out.append(stored_from_item(item).record)
                if len(out) == limit:
                    more = n + 1 < len(items) or bool(last)
                    return out, encode_message_cursor(out[-1]) if more else None
            if not last:
                return out, None
            kwargs["ExclusiveStartKey"] = last

    def discard(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> bool:
        return self._update(
            actor_id,
            message_id,
            UpdateExpression=(
                "SET #st = :discarded, disposition = :disp, #err = :err, finished_at = :now, "
                "updated_at = :now REMOVE next_attempt_at"
            ),
            ConditionExpression=(
                f"attribute_exists(message_id) AND {_NOT_TERMINAL} AND "
                "(attribute_not_exists(lease_until) OR lease_until < :now_epoch)"
            ),
            ExpressionAttributeNames={"#st": "status", "#err": "error"},
            ExpressionAttributeValues={
                ":discarded": {"S": "discarded"},
                ":disp": {"S": "discard"},
                ":err": json_attr(error),
                ":now": {"S": iso(now)},
                ":now_epoch": {"N": repr(now.timestamp())},
                **_TERMINAL_VALUES,
            },
        )

    def _update(self, actor_id: str, message_id: str, **kwargs: Any) -> bool:
        try:
            self.client.update_item(
                TableName=self.table_name, Key=self._key(actor_id, message_id), **kwargs
            )
        except Exception as exc:
            if is_conditional_check_failed(exc):
                return False
            raise
        return True

    def claim(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        lease_s: float,
        now: datetime,
        count_attempt: bool = True,
    ) -> Claim:
        update = "SET lease_owner = :owner, lease_until = :until, updated_at = :now"
        if count_attempt:
            update += " ADD attempts :one"
        values: dict[str, Any] = {
            ":owner": {"S": owner},
            ":until": {"N": repr(now.timestamp() + lease_s)},
            ":now": {"S": iso(now)},
            ":now_epoch": {"N": repr(now.timestamp())},
            **_TERMINAL_VALUES,
        }
        if count_attempt:
            values[":one"] = {"N": "1"}
        try:
            resp = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(actor_id, message_id),
                UpdateExpression=update,
                ConditionExpression=(
                    f"attribute_exists(message_id) AND {_NOT_TERMINAL} AND "
                    "(attribute_not_exists(lease_until) OR lease_until < :now_epoch)"
                ),
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if not is_conditional_check_failed(exc):
                raise
            current = self.load(actor_id, message_id)
            if current is None:
                return Claim("missing")
            if current.record.status in TERMINAL_STATUSES:
                return Claim("terminal", current)
            return Claim("busy", current)
        return Claim("claimed", stored_from_item(resp["Attributes"]))

    def mark_running(
        self, actor_id: str, message_id: str, *, owner: str, runner_id: str, now: datetime
    ) -> bool:
        return self._update(
            actor_id,
            message_id,
            UpdateExpression=(
                "SET #st = :running, runner_id = :rid, started_at = :now, updated_at = :now"
            ),
            ConditionExpression="lease_owner = :owner",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={
                ":running": {"S": "running"},
                ":rid": {"S": runner_id},
                ":now": {"S": iso(now)},
                ":owner": {"S": owner},
            },
        )

    def finish_failure(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        status: MessageStatus,
        error: dict[str, JsonValue] | None,
        disposition: Disposition,
        now: datetime,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        sets = ["#st = :st", "disposition = :disp", "updated_at = :now"]
        removes = ["lease_owner", "lease_until"]
        values: dict[str, Any] = {
            ":st": {"S": status},
            ":disp": {"S": disposition},
            ":now": {"S": iso(now)},
            ":owner": {"S": owner},
        }
        if error is not None:
            sets.append("#err = :err")
            values[":err"] = json_attr(error)
        if status in TERMINAL_STATUSES:
            sets.append("finished_at = :now")
            removes.append("next_attempt_at")
        elif next_attempt_at is not None:
            sets.append("next_attempt_at = :next")
            values[":next"] = {"S": iso(next_attempt_at)}
        return self._update(
            actor_id,
            message_id,
            UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            ConditionExpression="lease_owner = :owner",
            ExpressionAttributeNames={"#st": "status", **({"#err": "error"} if error else {})},
            ExpressionAttributeValues=values,
        )

    def release(self, actor_id: str, message_id: str, *, owner: str, now: datetime) -> None:
        self._update(
            actor_id,
            message_id,
            UpdateExpression=(
                "SET #st = :pending, updated_at = :now REMOVE lease_owner, lease_until"
            ),
            ConditionExpression=f"lease_owner = :owner AND {_NOT_TERMINAL}",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":now": {"S": iso(now)},
                ":pending": {"S": "pending"},
                **_TERMINAL_VALUES,
            },
        )

    def commit_success(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        expected_version: int,
        state: JsonValue,
        result: JsonValue,
        now: datetime,
        slot: SlotLease | None = None,
    ) -> bool:
        if self.actors is None:
            raise StoreCommitFailedError("DynamoDBMessageStore needs actors= to commit")
        message_update = {
            "TableName": self.table_name,
            "Key": self._key(actor_id, message_id),
            "UpdateExpression": (
                "SET #st = :done, #res = :res, finished_at = :now, updated_at = :now "
                "REMOVE lease_owner, lease_until, #err, disposition, next_attempt_at"
            ),
            "ConditionExpression": f"lease_owner = :owner AND {_NOT_TERMINAL}",
            "ExpressionAttributeNames": {"#st": "status", "#res": "result", "#err": "error"},
            "ExpressionAttributeValues": {
                ":done": {"S": "succeeded"},
                ":res": json_attr(result),
                ":now": {"S": iso(now)},
                ":owner": {"S": owner},
                **_TERMINAL_VALUES,
            },
        }
        actor_update = self.actors.commit_update(
            actor_id, expected_version=expected_version, state=state, now=now
        )
        items: list[dict[str, Any]] = [{"Update": actor_update}, {"Update": message_update}]
        release = slot is not None and self.slots is not None
        if slot is not None and self.slots is not None:
            items.append({"Delete": self.slots.release_op(slot)})
        try:
            self.client.transact_write_items(TransactItems=items)
            return release
        except Exception as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise StoreCommitFailedError(f"commit failed: {exc}") from exc
            reasons = [
                r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])
            ]
            if release and reasons[:2] == ["None", "None"]:
                # Only the slot moved on (our lease on it ran out): commit without it.
                return self.commit_success(
                    actor_id,
                    message_id,
                    owner=owner,
                    expected_version=expected_version,
                    state=state,
                    result=result,
                    now=now,
                )
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                raise _lease_lost(actor_id, message_id) from exc
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise _version_moved(actor_id, expected_version) from exc
            raise StoreCommitFailedError(f"commit cancelled: {reasons}") from exc

    def mark_effect(self, actor_id: str, message_id: str, effect: Effect, *, now: datetime) -> None:
        self._update(
            actor_id,
            message_id,
            UpdateExpression=f"SET {_EFFECT_ATTR[effect]} = :now",
            ConditionExpression="attribute_exists(message_id)",
            ExpressionAttributeValues={":now": {"S": iso(now)}},
        )


class InMemoryMessageStore:
    """Items in a dict with the same conditions. Refused inside Lambda.

    ``actors`` (an ``InMemoryActorStore``) is needed only by ``commit_success``.
    """

    def __init__(
        self,
        *,
        actors: InMemoryActorStore | None = None,
        slots: InMemorySlotStore | None = None,
        in_lambda: bool | None = None,
    ) -> None:
        if _in_lambda() if in_lambda is None else in_lambda:
            # The message record is the idempotency anchor of every execution.
            raise DurableStoreRequiredError("idempotency_store")
        self.actors = actors
        self.slots = slots
        self._items: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = actors.lock if actors is not None else threading.RLock()

    def create(self, message: MessageRecord) -> MessageRecord:
        message = with_timestamps(message, datetime.now(UTC))
        with self._lock:
            key = (message.actor_id, message.message_id)
            if key in self._items:
                return stored_from_item(self._items[key]).record
            self._items[key] = message_to_item(message)
        return message

    def load(self, actor_id: str, message_id: str) -> StoredMessage | None:
        with self._lock:
            item = self._items.get((actor_id, message_id))
            return stored_from_item(item) if item else None

    def get(self, actor_id: str, message_id: str) -> MessageRecord | None:
        stored = self.load(actor_id, message_id)
        return stored.record if stored else None

    def list_running(self, older_than: datetime, limit: int = 100) -> list[MessageRecord]:
        cutoff = iso(older_than)
        with self._lock:
            items = sorted(
                (
                    item
                    for item in self._items.values()
                    if item["status"]["S"] == "running" and item["updated_at"]["S"] < cutoff
                ),
                key=lambda item: item["updated_at"]["S"],
            )
            return [stored_from_item(item).record for item in items[: max(1, limit)]]

    def list_for_actor(
        self,
        actor_id: str,
        *,
        status: MessageStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[list[MessageRecord], str | None]:
        limit = max(1, min(limit, 1000))
        after = decode_message_cursor(cursor) if cursor else None
        with self._lock:
            keyed = sorted(
                ((item.get("created_at", {}).get("S", ""), key[1]), item)
                for key, item in self._items.items()
                if key[0] == actor_id
            )
        if not oldest_first:
            keyed.reverse()
        if after is not None:
            keyed = [(k, i) for k, i in keyed if (k > after if oldest_first else k < after)]
        records = [
            stored_from_item(item).record
            for _, item in keyed
            if status is None or item["status"]["S"] == status
        ]
        page = records[:limit]
        return page, encode_message_cursor(page[-1]) if len(records) > limit else None

    def discard(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> bool:
        with self._lock:
            item = self._items.get((actor_id, message_id))
            if item is None or item["status"]["S"] in TERMINAL_STATUSES:
                return False
            if "lease_until" in item and float(item["lease_until"]["N"]) >= now.timestamp():
                return False
            item["status"] = {"S": "discarded"}
            item["disposition"] = {"S": "discard"}
            item["error"] = json_attr(error)
            item["finished_at"] = item["updated_at"] = {"S": iso(now)}
            item.pop("next_attempt_at", None)
            return True

    def _held(self, actor_id: str, message_id: str, owner: str) -> dict[str, Any] | None:
        item = self._items.get((actor_id, message_id))
        if item is None or item.get("lease_owner", {}).get("S") != owner:
            return None
        return item

    def claim(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        lease_s: float,
        now: datetime,
        count_attempt: bool = True,
    ) -> Claim:
        with self._lock:
            item = self._items.get((actor_id, message_id))
            if item is None:
                return Claim("missing")
            if item["status"]["S"] in TERMINAL_STATUSES:
                return Claim("terminal", stored_from_item(item))
            if "lease_until" in item and float(item["lease_until"]["N"]) >= now.timestamp():
                return Claim("busy", stored_from_item(item))
            item["lease_owner"] = {"S": owner}
            item["lease_until"] = {"N": repr(now.timestamp() + lease_s)}
            item["updated_at"] = {"S": iso(now)}
            if count_attempt:
                item["attempts"] = {"N": str(int(item["attempts"]["N"]) + 1)}
            return Claim("claimed", stored_from_item(item))

    def mark_running(
        self, actor_id: str, message_id: str, *, owner: str, runner_id: str, now: datetime
    ) -> bool:
        with self._lock:
            item = self._held(actor_id, message_id, owner)
            if item is None:
                return False
            item["status"] = {"S": "running"}
            item["runner_id"] = {"S": runner_id}
            item["started_at"] = item["updated_at"] = {"S": iso(now)}
            return True

    def finish_failure(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        status: MessageStatus,
        error: dict[str, JsonValue] | None,
        disposition: Disposition,
        now: datetime,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        with self._lock:
            item = self._held(actor_id, message_id, owner)
            if item is None:
                return False
            item["status"] = {"S": status}
            item["disposition"] = {"S": disposition}
            item["updated_at"] = {"S": iso(now)}
            if error is not None:
                item["error"] = json_attr(error)
            if status in TERMINAL_STATUSES:
                item["finished_at"] = {"S": iso(now)}
                item.pop("next_attempt_at", None)
            elif next_attempt_at is not None:
                item["next_attempt_at"] = {"S": iso(next_attempt_at)}
            item.pop("lease_owner", None)
            item.pop("lease_until", None)
            return True

    def release(self, actor_id: str, message_id: str, *, owner: str, now: datetime) -> None:
        with self._lock:
            item = self._held(actor_id, message_id, owner)
            if item is not None and item["status"]["S"] not in TERMINAL_STATUSES:
                item.pop("lease_owner", None)
                item.pop("lease_until", None)
                item["status"] = {"S": "pending"}
                item["updated_at"] = {"S": iso(now)}

    def commit_success(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        expected_version: int,
        state: JsonValue,
        result: JsonValue,
        now: datetime,
        slot: SlotLease | None = None,
    ) -> bool:
        if self.actors is None:
            raise StoreCommitFailedError("InMemoryMessageStore needs actors= to commit")
        with self._lock:
            item = self._held(actor_id, message_id, owner)
            if item is None or item["status"]["S"] in TERMINAL_STATUSES:
                raise _lease_lost(actor_id, message_id)
            if not self.actors._check_version(actor_id, expected_version):
                raise _version_moved(actor_id, expected_version)
            self.actors._apply_commit(actor_id, state=state, now=now)
            item["status"] = {"S": "succeeded"}
            item["result"] = json_attr(result)
            item["finished_at"] = item["updated_at"] = {"S": iso(now)}
            for name in ("lease_owner", "lease_until", "error", "disposition", "next_attempt_at"):
                item.pop(name, None)
            if slot is not None and self.slots is not None:
                return self.slots.release_if_held(slot)
            return False

    def mark_effect(self, actor_id: str, message_id: str, effect: Effect, *, now: datetime) -> None:
        with self._lock:
            item = self._items.get((actor_id, message_id))
            if item is not None:
                item[_EFFECT_ATTR[effect]] = {"S": iso(now)}
