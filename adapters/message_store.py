"""Where messages live: one ``Protocol``, a DynamoDB store and an in-memory store.

Item shape (``MessagesTable``, hash ``actor_id``, range ``message_id``): JSON text for
``input``/``result``/``error``, datetimes as fixed-width ISO-8601 UTC (so they sort); plus the
execution's bookkeeping, which is not part of ``MessageRecord``:

- ``open_key`` (``created_at#message_id``) while the message is not final: the sparse index
  ``open_by_actor`` lists an actor's open messages oldest first (the host's order guard).
- ``running_shard``/``running_since`` while it runs: the sparse index ``running_by_shard``
  (16 shards, so no hot low-cardinality key) finds executions that went silent.
- ``expires_at`` (epoch s) on final records when a retention is set: DynamoDB's TTL.
- ``attempt_base``/``retries``: a retried dead letter gets a fresh attempt budget
  (``attempts - attempt_base``) while ``attempts`` keeps counting every run.

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
import random
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import JsonValue

from adapters.actor_store import (
    DynamoDBActorStore,
    InMemoryActorStore,
    decode_fields,
    encode_fields,
    with_timestamps,
)
from adapters.aws import LazyClient, error_code, is_conditional_check_failed
from adapters.dynamodb.items import format_time, json_attr
from adapters.settings import in_lambda as _in_lambda
from adapters.slots import DynamoDBSlotStore, InMemorySlotStore
from core.exceptions import (
    DurableStoreRequiredError,
    ExecutionLeaseLostError,
    StoreCommitFailedError,
)
from core.models import TERMINAL_STATUSES, MessageRecord, MessageStatus
from core.ports import Claim, Disposition, Effect, ReopenOutcome, SlotLease, StoredMessage


def encode_message_cursor(record: MessageRecord) -> str:
    """An opaque page cursor (same style as the actor list's): the last message of the page."""
    created = format_time(record.created_at) if record.created_at else ""
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


OPEN_INDEX: Final = "open_by_actor"
RUNNING_INDEX: Final = "running_by_shard"
RUNNING_SHARDS: Final = 16
RETRYABLE_STATUSES: Final = frozenset({"dead_lettered", "discarded"})
"""Final statuses ``reopen`` (the retry route, an SQS redrive) runs again."""
CONFLICT_TRIES: Final = 4
"""Commit attempts when DynamoDB cancels with ``TransactionConflict`` (a concurrent write)."""


class CommitRefusedError(StoreCommitFailedError):
    """DynamoDB refused the commit itself (``ValidationException``): final for the message."""

    def __init__(self, message: str, aws_code: str) -> None:
        super().__init__(message)
        self.aws_code = aws_code


def open_key(created_at: datetime | None, message_id: str) -> str:
    """The ``open_by_actor`` sort key: creation order, the id breaking ties."""
    return f"{format_time(created_at) if created_at else ''}#{message_id}"


def running_shard(actor_id: str) -> str:
    """The ``running_by_shard`` hash key of an actor's running message (stable, 0..15)."""
    return str(zlib.crc32(actor_id.encode()) % RUNNING_SHARDS)


_EFFECT_ATTR: Final[dict[str, str]] = {"dlq": "dlq_sent_at", "reply": "replied_at"}
_JSON_FIELDS: Final = ("input", "result", "error")
_TEXT_FIELDS: Final = ("disposition", "runner_id", "reply_to")
_TIME_FIELDS: Final = ("created_at", "updated_at", "started_at", "finished_at", "next_attempt_at")


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
    if message.status not in TERMINAL_STATUSES:
        item["open_key"] = {"S": open_key(message.created_at, message.message_id)}
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
        attempt_base=int(item["attempt_base"]["N"]) if "attempt_base" in item else 0,
        retries=int(item["retries"]["N"]) if "retries" in item else 0,
        open_key=item["open_key"]["S"] if "open_key" in item else None,
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
_RETRYABLE_VALUES: Final = {f":r{i}": {"S": s} for i, s in enumerate(sorted(RETRYABLE_STATUSES))}
_NOT_RUNNING: Final = "running_shard, running_since"
"""REMOVE clause: the message leaves the running index (handed back, retried or final)."""


def _expires_at(now: datetime, retention_s: float | None) -> float | None:
    return now.timestamp() + retention_s if retention_s else None


class DynamoDBMessageStore(LazyClient):
    """``MessagesTable`` through the low-level boto3 client.

    ``actors`` (the actors table) is needed only by ``commit_success``, whose one
    TransactWriteItems spans both tables (and the slots table when ``slots`` is given).
    ``retention_s`` sets ``expires_at`` (TTL) on records as they become final.
    """

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        *,
        actors: DynamoDBActorStore | None = None,
        slots: DynamoDBSlotStore | None = None,
        retention_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self.actors = actors
        self.slots = slots
        self.retention_s = retention_s
        self._sleep = sleep

    @staticmethod
    def _key(actor_id: str, message_id: str) -> dict[str, Any]:
        return {"actor_id": {"S": actor_id}, "message_id": {"S": message_id}}

    def _final_sets(self, now: datetime, values: dict[str, Any]) -> list[str]:
        """SET clauses every final write adds (``finished_at``, and ``expires_at`` if kept)."""
        values[":now"] = {"S": format_time(now)}
        sets = ["finished_at = :now"]
        expires = _expires_at(now, self.retention_s)
        if expires is not None:
            values[":exp"] = {"N": str(int(expires))}
            sets.append("expires_at = :exp")
        return sets

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
        limit = max(1, limit)
        out: list[MessageRecord] = []
        for shard in range(RUNNING_SHARDS):
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "IndexName": RUNNING_INDEX,
                "KeyConditionExpression": "running_shard = :s AND running_since < :t",
                "ExpressionAttributeValues": {
                    ":s": {"S": str(shard)},
                    ":t": {"S": format_time(older_than)},
                },
                "Limit": limit,
            }
            got = 0
            while got < limit:
                resp = self.client.query(**kwargs)
                for item in resp.get("Items", []):
                    stored = stored_from_item(item)
                    if stored.record.status == "running":
                        out.append(stored.record)
                        got += 1
                last = resp.get("LastEvaluatedKey")
                if not last:
                    break
                kwargs["ExclusiveStartKey"] = last
        out.sort(key=lambda m: format_time(m.updated_at) if m.updated_at else "")
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
        values: dict[str, Any] = {
            ":discarded": {"S": "discarded"},
            ":disp": {"S": "discard"},
            ":err": json_attr(error),
            ":now_epoch": {"N": repr(now.timestamp())},
            **_TERMINAL_VALUES,
        }
        sets = [
            "#st = :discarded",
            "disposition = :disp",
            "#err = :err",
            "updated_at = :now",
            *self._final_sets(now, values),
        ]
        return self._update(
            actor_id,
            message_id,
            UpdateExpression=(
                f"SET {', '.join(sets)} REMOVE next_attempt_at, open_key, {_NOT_RUNNING}"
            ),
            ConditionExpression=(
                f"attribute_exists(message_id) AND {_NOT_TERMINAL} AND "
                "(attribute_not_exists(lease_until) OR lease_until < :now_epoch)"
            ),
            ExpressionAttributeNames={"#st": "status", "#err": "error"},
            ExpressionAttributeValues=values,
        )

    def oldest_open(self, actor_id: str) -> tuple[str, str] | None:
        resp = self.client.query(
            TableName=self.table_name,
            IndexName=OPEN_INDEX,
            KeyConditionExpression="actor_id = :a",
            ExpressionAttributeValues={":a": {"S": actor_id}},
            Limit=1,
        )
        items = resp.get("Items", [])
        if not items:
            return None
        return items[0]["message_id"]["S"], items[0]["open_key"]["S"]

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
            ":now": {"S": format_time(now)},
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
                "SET #st = :running, runner_id = :rid, started_at = :now, updated_at = :now, "
                "running_shard = :shard, running_since = :now"
            ),
            ConditionExpression="lease_owner = :owner",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={
                ":running": {"S": "running"},
                ":rid": {"S": runner_id},
                ":now": {"S": format_time(now)},
                ":owner": {"S": owner},
                ":shard": {"S": running_shard(actor_id)},
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
        values: dict[str, Any] = {
            ":st": {"S": status},
            ":disp": {"S": disposition},
            ":now": {"S": format_time(now)},
            ":owner": {"S": owner},
        }
        sets = ["#st = :st", "disposition = :disp", "updated_at = :now"]
        removes = ["lease_owner", "lease_until", _NOT_RUNNING]
        if error is not None:
            sets.append("#err = :err")
            values[":err"] = json_attr(error)
        if status in TERMINAL_STATUSES:
            sets.extend(self._final_sets(now, values))
            removes.extend(["next_attempt_at", "open_key"])
        elif next_attempt_at is not None:
            sets.append("next_attempt_at = :next")
            values[":next"] = {"S": format_time(next_attempt_at)}
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
                "SET #st = :pending, updated_at = :now "
                f"REMOVE lease_owner, lease_until, {_NOT_RUNNING}"
            ),
            ConditionExpression=f"lease_owner = :owner AND {_NOT_TERMINAL}",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":now": {"S": format_time(now)},
                ":pending": {"S": "pending"},
                **_TERMINAL_VALUES,
            },
        )

    def note_waiting(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> bool:
        return self._update(
            actor_id,
            message_id,
            UpdateExpression="SET #err = :err, updated_at = :now",
            ConditionExpression=(
                "#st = :pending AND attribute_not_exists(lease_owner) "
                "AND attribute_not_exists(#err)"
            ),
            ExpressionAttributeNames={"#st": "status", "#err": "error"},
            ExpressionAttributeValues={
                ":err": json_attr(error),
                ":now": {"S": format_time(now)},
                ":pending": {"S": "pending"},
            },
        )

    def give_up(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> StoredMessage | None:
        values: dict[str, Any] = {
            ":dl": {"S": "dead_lettered"},
            ":disp": {"S": "dead_letter"},
            ":err": json_attr(error),
            ":now_epoch": {"N": repr(now.timestamp())},
            **_TERMINAL_VALUES,
        }
        sets = ["#st = :dl", "disposition = :disp", "#err = :err", "updated_at = :now"]
        sets.extend(self._final_sets(now, values))
        try:
            resp = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(actor_id, message_id),
                UpdateExpression=(
                    f"SET {', '.join(sets)} REMOVE lease_owner, lease_until, next_attempt_at, "
                    f"open_key, {_NOT_RUNNING}"
                ),
                ConditionExpression=(
                    f"attribute_exists(message_id) AND {_NOT_TERMINAL} AND "
                    "(attribute_not_exists(lease_until) OR lease_until < :now_epoch)"
                ),
                ExpressionAttributeNames={"#st": "status", "#err": "error"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if is_conditional_check_failed(exc):
                return None
            raise
        return stored_from_item(resp["Attributes"])

    def reopen(
        self, actor_id: str, message_id: str, *, now: datetime
    ) -> tuple[ReopenOutcome, StoredMessage | None]:
        current = self.load(actor_id, message_id)
        if current is None:
            return "missing", None
        if current.record.status not in RETRYABLE_STATUSES:
            return "not_retryable", current
        record = current.record
        try:
            resp = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(actor_id, message_id),
                UpdateExpression=(
                    "SET #st = :pending, disposition = :retry, attempt_base = attempts, "
                    "open_key = :open, updated_at = :now ADD retries :one "
                    "REMOVE finished_at, expires_at, dlq_sent_at, replied_at, next_attempt_at, "
                    "lease_owner, lease_until"
                ),
                ConditionExpression=f"#st IN ({', '.join(_RETRYABLE_VALUES)})",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={
                    ":pending": {"S": "pending"},
                    ":retry": {"S": "retry"},
                    ":open": {"S": open_key(record.created_at, record.message_id)},
                    ":now": {"S": format_time(now)},
                    ":one": {"N": "1"},
                    **_RETRYABLE_VALUES,
                },
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if not is_conditional_check_failed(exc):
                raise
            return "not_retryable", self.load(actor_id, message_id)
        return "reopened", stored_from_item(resp["Attributes"])

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
        values: dict[str, Any] = {
            ":done": {"S": "succeeded"},
            ":res": json_attr(result),
            ":owner": {"S": owner},
            **_TERMINAL_VALUES,
        }
        sets = ["#st = :done", "#res = :res", "updated_at = :now", *self._final_sets(now, values)]
        message_update = {
            "TableName": self.table_name,
            "Key": self._key(actor_id, message_id),
            "UpdateExpression": (
                f"SET {', '.join(sets)} REMOVE lease_owner, lease_until, #err, disposition, "
                f"next_attempt_at, open_key, {_NOT_RUNNING}"
            ),
            "ConditionExpression": f"lease_owner = :owner AND {_NOT_TERMINAL}",
            "ExpressionAttributeNames": {"#st": "status", "#res": "result", "#err": "error"},
            "ExpressionAttributeValues": values,
        }
        actor_update = self.actors.commit_update(
            actor_id, expected_version=expected_version, state=state, now=now
        )
        items: list[dict[str, Any]] = [{"Update": actor_update}, {"Update": message_update}]
        release = slot is not None and self.slots is not None
        if slot is not None and self.slots is not None:
            items.append({"Delete": self.slots.release_op(slot)})
        for attempt in range(CONFLICT_TRIES):
            try:
                self.client.transact_write_items(TransactItems=items)
                return release
            except Exception as exc:
                code = error_code(exc)
                if code == "ValidationException":
                    raise CommitRefusedError(f"commit refused: {exc}", code) from exc
                if code != "TransactionCanceledException":
                    raise StoreCommitFailedError(f"commit failed: {exc}") from exc
                reasons = [
                    r.get("Code")
                    for r in getattr(exc, "response", {}).get("CancellationReasons", [])
                ]
                if "ValidationError" in reasons:
                    raise CommitRefusedError(
                        f"commit refused: {reasons}", "ValidationError"
                    ) from exc
                if "TransactionConflict" in reasons and attempt + 1 < CONFLICT_TRIES:
                    # Another write to one of the items was in flight (the actor item takes
                    # telemetry writes concurrently): DynamoDB asks us to try again shortly.
                    self._sleep(0.02 * (2**attempt) * (0.5 + random.random() / 2))
                    continue
                if (
                    release
                    and reasons[:2] == ["None", "None"]
                    and "TransactionConflict" not in reasons
                ):
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
        raise AssertionError("unreachable")  # pragma: no cover

    def mark_effect(self, actor_id: str, message_id: str, effect: Effect, *, now: datetime) -> None:
        self._update(
            actor_id,
            message_id,
            UpdateExpression=f"SET {_EFFECT_ATTR[effect]} = :now",
            ConditionExpression="attribute_exists(message_id)",
            ExpressionAttributeValues={":now": {"S": format_time(now)}},
        )


_INDEX_ATTRS: Final = ("open_key", "running_shard", "running_since")


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
        retention_s: float | None = None,
    ) -> None:
        if _in_lambda() if in_lambda is None else in_lambda:
            # The message record is the idempotency anchor of every execution.
            raise DurableStoreRequiredError("idempotency_store")
        self.actors = actors
        self.slots = slots
        self.retention_s = retention_s
        self._items: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = actors.lock if actors is not None else threading.RLock()

    def _finish(self, item: dict[str, Any], now: datetime) -> None:
        item["finished_at"] = {"S": format_time(now)}
        expires = _expires_at(now, self.retention_s)
        if expires is not None:
            item["expires_at"] = {"N": str(int(expires))}
        for name in ("next_attempt_at", *_INDEX_ATTRS):
            item.pop(name, None)

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
        cutoff = format_time(older_than)
        with self._lock:
            items = sorted(
                (
                    item
                    for item in self._items.values()
                    if item["status"]["S"] == "running"
                    and "running_since" in item
                    and item["running_since"]["S"] < cutoff
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
            item["updated_at"] = {"S": format_time(now)}
            self._finish(item, now)
            return True

    def oldest_open(self, actor_id: str) -> tuple[str, str] | None:
        with self._lock:
            keys = sorted(
                (item["open_key"]["S"], item["message_id"]["S"])
                for (a, _), item in self._items.items()
                if a == actor_id and "open_key" in item
            )
        return (keys[0][1], keys[0][0]) if keys else None

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
            item["updated_at"] = {"S": format_time(now)}
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
            item["started_at"] = item["updated_at"] = item["running_since"] = {
                "S": format_time(now)
            }
            item["running_shard"] = {"S": running_shard(actor_id)}
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
            item["updated_at"] = {"S": format_time(now)}
            if error is not None:
                item["error"] = json_attr(error)
            item.pop("running_shard", None)
            item.pop("running_since", None)
            if status in TERMINAL_STATUSES:
                self._finish(item, now)
            elif next_attempt_at is not None:
                item["next_attempt_at"] = {"S": format_time(next_attempt_at)}
            item.pop("lease_owner", None)
            item.pop("lease_until", None)
            return True

    def release(self, actor_id: str, message_id: str, *, owner: str, now: datetime) -> None:
        with self._lock:
            item = self._held(actor_id, message_id, owner)
            if item is not None and item["status"]["S"] not in TERMINAL_STATUSES:
                for name in ("lease_owner", "lease_until", "running_shard", "running_since"):
                    item.pop(name, None)
                item["status"] = {"S": "pending"}
                item["updated_at"] = {"S": format_time(now)}

    def note_waiting(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> bool:
        with self._lock:
            item = self._items.get((actor_id, message_id))
            if (
                item is None
                or item["status"]["S"] != "pending"
                or "lease_owner" in item
                or "error" in item
            ):
                return False
            item["error"] = json_attr(error)
            item["updated_at"] = {"S": format_time(now)}
            return True

    def give_up(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> StoredMessage | None:
        with self._lock:
            item = self._items.get((actor_id, message_id))
            if item is None or item["status"]["S"] in TERMINAL_STATUSES:
                return None
            if "lease_until" in item and float(item["lease_until"]["N"]) >= now.timestamp():
                return None
            item["status"] = {"S": "dead_lettered"}
            item["disposition"] = {"S": "dead_letter"}
            item["error"] = json_attr(error)
            item["updated_at"] = {"S": format_time(now)}
            item.pop("lease_owner", None)
            item.pop("lease_until", None)
            self._finish(item, now)
            return stored_from_item(item)

    def reopen(
        self, actor_id: str, message_id: str, *, now: datetime
    ) -> tuple[ReopenOutcome, StoredMessage | None]:
        with self._lock:
            item = self._items.get((actor_id, message_id))
            if item is None:
                return "missing", None
            if item["status"]["S"] not in RETRYABLE_STATUSES:
                return "not_retryable", stored_from_item(item)
            record = stored_from_item(item).record
            item["status"] = {"S": "pending"}
            item["disposition"] = {"S": "retry"}
            item["attempt_base"] = {"N": item["attempts"]["N"]}
            item["retries"] = {"N": str(int(item.get("retries", {"N": "0"})["N"]) + 1)}
            item["open_key"] = {"S": open_key(record.created_at, record.message_id)}
            item["updated_at"] = {"S": format_time(now)}
            for name in (
                "finished_at",
                "expires_at",
                "dlq_sent_at",
                "replied_at",
                "next_attempt_at",
                "lease_owner",
                "lease_until",
            ):
                item.pop(name, None)
            return "reopened", stored_from_item(item)

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
            item["updated_at"] = {"S": format_time(now)}
            self._finish(item, now)
            for name in ("lease_owner", "lease_until", "error", "disposition"):
                item.pop(name, None)
            if slot is not None and self.slots is not None:
                return self.slots.release_if_held(slot)
            return False

    def mark_effect(self, actor_id: str, message_id: str, effect: Effect, *, now: datetime) -> None:
        with self._lock:
            item = self._items.get((actor_id, message_id))
            if item is not None:
                item[_EFFECT_ATTR[effect]] = {"S": format_time(now)}
