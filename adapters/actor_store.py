"""Where actors live: one ``Protocol``, a DynamoDB store and an in-memory store.

Item shape (``ActorsTable``, hash ``actor_id``, GSI ``by_namespace``): plain string/number
attributes for what conditions look at (``state_version``, ``status``, ``failure_code``,
``extra_rev``), and JSON text for free-form values (``state``, ``extra``, ``failure_reason``...),
so any JSON (floats included) round-trips exactly.

Three independent writers never get in each other's way:
- the state commit (``state``, ``state_version``; conditional on ``state_version``; see
  ``message_store.commit_success``);
- ``set_failure_reason`` (``failure_reason``/``failure_code``; never bumps ``state_version``);
- ``append_errors`` (``extra``; optimistic on ``extra_rev``; never bumps ``state_version``).
Each update names only its own attributes, so telemetry can never make a state commit fail.
"""

from __future__ import annotations

import base64
import builtins
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from adapters.aws import LazyClient, is_conditional_check_failed
from adapters.dynamodb.items import format_time, json_attr, parse_time
from adapters.settings import in_lambda as _in_lambda
from core.errors import (
    ActorError,
    ActorFailed,
    ActorFailureReason,
    ErrorDecodeError,
    OtherFailureReason,
    RunnerPoolError,
    decode_failure_reason,
)
from core.events import ErrorEvent
from core.events import append_errors as _append_errors
from core.exceptions import DurableStoreRequiredError
from core.models import ActorRecord, ActorStatus, MessageRecord
from core.ports import ActorExistsError

_APPEND_TRIES: Final = 8
UNDECODABLE: Final = "record_undecodable"

logger = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


_Record = TypeVar("_Record", ActorRecord, MessageRecord)


def with_timestamps(record: _Record, now: datetime) -> _Record:
    """``record`` with ``created_at``/``updated_at`` set to ``now`` where they are unset."""
    return record.model_copy(
        update={"created_at": record.created_at or now, "updated_at": record.updated_at or now}
    )


def encode_fields(
    item: dict[str, Any],
    record: ActorRecord | MessageRecord,
    doc: dict[str, Any],
    *,
    json_fields: Iterable[str],
    time_fields: Iterable[str],
) -> None:
    """Put ``record``'s set JSON fields (as JSON text) and datetimes (as ``iso``) into ``item``.

    ``doc`` is ``record.model_dump(mode="json")``.
    """
    for name in json_fields:
        if doc.get(name) is not None:
            item[name] = json_attr(doc[name])
    for name in time_fields:
        value = getattr(record, name)
        if value is not None:
            item[name] = {"S": format_time(value)}


def decode_fields(
    doc: dict[str, Any],
    item: dict[str, Any],
    *,
    json_fields: Iterable[str],
    time_fields: Iterable[str],
) -> None:
    """Inverse of ``encode_fields``: the JSON fields and datetimes ``item`` has, into ``doc``."""
    for name in json_fields:
        if name in item:
            doc[name] = json.loads(item[name]["S"])
    for name in time_fields:
        if name in item:
            doc[name] = parse_time(item[name]["S"])


def encode_cursor(actor_id: str) -> str:
    """An opaque page cursor: the last actor id of the page."""
    return base64.urlsafe_b64encode(actor_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Inverse of ``encode_cursor``; a malformed cursor raises ``ValueError``."""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc


# --- item codec ----------------------------------------------------------------------------

_JSON_FIELDS: Final = (
    "state",
    "extra",
    "failure_reason",
    "last_actor_error",
    "error_policy",
    "start_error",
    "stop_error",
)
_ERROR_FIELDS: Final = ("failure_reason", "last_actor_error", "start_error", "stop_error")
_TIME_FIELDS: Final = ("created_at", "updated_at")


def actor_to_item(actor: ActorRecord) -> dict[str, Any]:
    """ActorRecord -> low-level DynamoDB item."""
    doc = actor.model_dump(mode="json")
    item: dict[str, Any] = {
        "actor_id": {"S": actor.actor_id},
        "namespace": {"S": actor.namespace},
        "runner_name": {"S": actor.runner_name},
        "state_version": {"N": str(actor.state_version)},
        "status": {"S": actor.status},
        "extra_rev": {"N": "0"},
    }
    if actor.key is not None:
        item["key"] = {"S": actor.key}
    if actor.failure_reason is not None:
        item["failure_code"] = {"S": actor.failure_reason.code}
    encode_fields(item, actor, doc, json_fields=_JSON_FIELDS, time_fields=_TIME_FIELDS)
    return item


def actor_from_item(item: dict[str, Any]) -> ActorRecord:
    """Low-level DynamoDB item -> ActorRecord."""
    doc: dict[str, Any] = {
        "actor_id": item["actor_id"]["S"],
        "namespace": item["namespace"]["S"],
        "runner_name": item["runner_name"]["S"],
        "state_version": int(item.get("state_version", {"N": "0"})["N"]),
        "status": item.get("status", {"S": "active"})["S"],
    }
    if "key" in item:
        doc["key"] = item["key"]["S"]
    decode_fields(doc, item, json_fields=_JSON_FIELDS, time_fields=_TIME_FIELDS)
    try:
        return ActorRecord.model_validate(doc)
    except ValueError:
        pass
    # One stored error does not decode (written by a bug or a far newer build): isolate it.
    # Drop the error fields that fail on their own and mark the actor with record_undecodable,
    # so the API shows that instead of failing (the rest of a listing goes on).
    base = {k: v for k, v in doc.items() if k not in _ERROR_FIELDS}
    bad: list[str] = []
    for name in _ERROR_FIELDS:
        if name in doc:
            try:
                ActorRecord.model_validate({**base, name: doc[name]})
            except ValueError:
                bad.append(name)
    if not bad:
        raise ErrorDecodeError(f"actor {doc['actor_id']}: item does not decode")
    logger.warning(
        "actor item has an undecodable error field",
        extra={"code": UNDECODABLE, "actor_id": doc["actor_id"], "fields": bad},
    )
    raw = json.dumps(doc[bad[0]])[:512]
    for name in bad:
        doc[name] = None
    if doc.get("failure_reason") is None:
        doc["failure_reason"] = OtherFailureReason(
            data={"code": UNDECODABLE, "message": f"stored {bad[0]} does not decode", "raw": raw}
        )
    return ActorRecord.model_validate(doc)


def listed(items: Iterable[dict[str, Any]]) -> builtins.list[ActorRecord]:
    """The actors among ``items`` that decode; any other is logged and skipped (never a 500)."""
    out: builtins.list[ActorRecord] = []
    for item in items:
        try:
            out.append(actor_from_item(item))
        except (ValueError, KeyError, TypeError):
            logger.warning(
                "actor item does not decode; skipped in a listing",
                extra={"code": UNDECODABLE, "actor_id": item.get("actor_id", {}).get("S")},
            )
    return out


class DynamoDBActorStore(LazyClient):
    """``ActorsTable`` through the low-level boto3 client."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client

    @staticmethod
    def _key(actor_id: str) -> dict[str, Any]:
        return {"actor_id": {"S": actor_id}}

    def create(self, actor: ActorRecord) -> ActorRecord:
        actor = with_timestamps(actor, _now())
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=actor_to_item(actor),
                ConditionExpression="attribute_not_exists(actor_id)",
            )
        except Exception as exc:
            if is_conditional_check_failed(exc):
                raise ActorExistsError(actor.actor_id) from exc
            raise
        return actor

    def _get_item(self, actor_id: str) -> dict[str, Any] | None:
        resp = self.client.get_item(
            TableName=self.table_name, Key=self._key(actor_id), ConsistentRead=True
        )
        item: dict[str, Any] | None = resp.get("Item")
        return item

    def get(self, actor_id: str) -> ActorRecord | None:
        item = self._get_item(actor_id)
        return actor_from_item(item) if item else None

    def get_many(self, actor_ids: Sequence[str]) -> dict[str, ActorRecord]:
        out: dict[str, ActorRecord] = {}
        ids = list(dict.fromkeys(actor_ids))
        for start in range(0, len(ids), 100):  # BatchGetItem takes at most 100 keys
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [self._key(i) for i in ids[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            for _ in range(10):
                resp = self.client.batch_get_item(RequestItems=request)
                for item in resp.get("Responses", {}).get(self.table_name, []):
                    actor = actor_from_item(item)
                    out[actor.actor_id] = actor
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:  # throttled ten times: read the rest one by one
                for key in request.get(self.table_name, {}).get("Keys", []):
                    got = self.get(key["actor_id"]["S"])
                    if got is not None:
                        out[got.actor_id] = got
        return out

    def list(
        self, namespace: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[builtins.list[ActorRecord], str | None]:
        limit = max(1, min(limit, 1000))
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": "by_namespace",
            "KeyConditionExpression": "#ns = :ns",
            "ExpressionAttributeNames": {"#ns": "namespace"},
            "ExpressionAttributeValues": {":ns": {"S": namespace}},
            "Limit": limit,
        }
        if cursor:
            kwargs["ExclusiveStartKey"] = {
                "namespace": {"S": namespace},
                "actor_id": {"S": decode_cursor(cursor)},
            }
        actors: builtins.list[ActorRecord] = []
        while True:
            resp = self.client.query(**kwargs)
            actors.extend(listed(resp.get("Items", [])))
            last = resp.get("LastEvaluatedKey")
            if len(actors) >= limit or not last:
                break
            kwargs["ExclusiveStartKey"] = last
            kwargs["Limit"] = limit - len(actors)
        actors = actors[:limit]
        more = bool(last) and len(actors) == limit
        return actors, encode_cursor(actors[-1].actor_id) if more and actors else None

    def set_failure_reason(
        self,
        actor_id: str,
        reason: ActorFailureReason | None,
        *,
        only_if_empty: bool = False,
        only_if_code: str | None = None,
    ) -> bool:
        conditions = ["attribute_exists(actor_id)"]
        values: dict[str, Any] = {":now": {"S": format_time(_now())}}
        if only_if_empty:
            conditions.append("attribute_not_exists(failure_code)")
        if only_if_code is not None:
            conditions.append("failure_code = :only")
            values[":only"] = {"S": only_if_code}
        if reason is None:
            update = "SET updated_at = :now REMOVE failure_reason, failure_code"
        else:
            update = "SET failure_reason = :r, failure_code = :c, updated_at = :now"
            values[":r"] = json_attr(reason.to_json())
            values[":c"] = {"S": reason.code}
        return self._write(actor_id, update, values, condition=" AND ".join(conditions))

    def append_errors(self, actor_id: str, events: Sequence[ErrorEvent], *, cap: int) -> None:
        if not events:
            return
        for _ in range(_APPEND_TRIES):
            item = self._get_item(actor_id)
            if item is None:
                return
            rev = int(item.get("extra_rev", {"N": "0"})["N"])
            extra = json.loads(item["extra"]["S"]) if "extra" in item else {}
            new_extra = _append_errors(extra if isinstance(extra, dict) else {}, events, cap=cap)
            # Optimistic on extra_rev (or its absence for items written by older code).
            condition = (
                "extra_rev = :rev" if "extra_rev" in item else "attribute_not_exists(extra_rev)"
            )
            values: dict[str, Any] = {
                ":extra": json_attr(new_extra),
                ":next": {"N": str(rev + 1)},
            }
            if "extra_rev" in item:
                values[":rev"] = {"N": str(rev)}
            update = "SET extra = :extra, extra_rev = :next"
            if self._write(
                actor_id, update, values, condition=f"attribute_exists(actor_id) AND {condition}"
            ):
                return
        # Telemetry lost a race eight times in a row: drop it rather than fail the execution.

    def set_status(
        self,
        actor_id: str,
        status: ActorStatus,
        *,
        last_actor_error: ActorFailed | None = None,
        stop_error: ActorError | None = None,
    ) -> None:
        update = "SET #st = :st, updated_at = :now"
        values: dict[str, Any] = {":st": {"S": status}, ":now": {"S": format_time(_now())}}
        if last_actor_error is not None:
            update += ", last_actor_error = :e"
            values[":e"] = {"S": json.dumps(last_actor_error.to_json())}
        if stop_error is not None:
            update += ", stop_error = :stop"
            values[":stop"] = json_attr(stop_error.to_json())
        elif status == "active":
            update += " REMOVE stop_error"
        self._write(actor_id, update, values, ExpressionAttributeNames={"#st": "status"})

    def set_last_actor_error(self, actor_id: str, error: ActorFailed | None) -> None:
        values: dict[str, Any] = {":now": {"S": format_time(_now())}}
        if error is None:
            update = "SET updated_at = :now REMOVE last_actor_error"
        else:
            update = "SET last_actor_error = :e, updated_at = :now"
            values[":e"] = {"S": json.dumps(error.to_json())}
        self._write(actor_id, update, values)

    def _write(
        self,
        actor_id: str,
        update: str,
        values: dict[str, Any],
        *,
        condition: str = "attribute_exists(actor_id)",
        **kwargs: Any,
    ) -> bool:
        """One ``UpdateItem`` on an existing actor; ``False`` if its condition failed."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(actor_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                **kwargs,
            )
        except Exception as exc:
            if is_conditional_check_failed(exc):
                return False
            raise
        return True

    def set_start_error(self, actor_id: str, error: RunnerPoolError | None) -> None:
        values: dict[str, Any] = {":now": {"S": format_time(_now())}}
        if error is None:
            update = "SET updated_at = :now REMOVE start_error"
        else:
            update = "SET start_error = :e, updated_at = :now"
            values[":e"] = json_attr(error.to_json())
        self._write(actor_id, update, values)

    def clear_on_init(self, actor_id: str) -> None:
        self._write(
            actor_id,
            "SET updated_at = :now "
            "REMOVE start_error, failure_reason, failure_code, last_actor_error",
            {":now": {"S": format_time(_now())}},
        )

    def resume(self, actor_id: str) -> bool:
        return self._write(
            actor_id,
            "SET #st = :active, updated_at = :now REMOVE stop_error",
            {
                ":active": {"S": "active"},
                ":stopped": {"S": "stopped"},
                ":now": {"S": format_time(_now())},
            },
            condition="#st = :stopped",
            ExpressionAttributeNames={"#st": "status"},
        )

    def delete(self, actor_id: str) -> bool:
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key=self._key(actor_id),
                ConditionExpression="attribute_exists(actor_id)",
            )
        except Exception as exc:
            if is_conditional_check_failed(exc):
                return False
            raise
        return True

    def commit_update(
        self, actor_id: str, *, expected_version: int, state: Any, now: datetime
    ) -> dict[str, Any]:
        """The actor half of an execution commit, as a TransactWriteItems ``Update``.

        New state and ``state_version + 1``, conditional on the version the execution read;
        clears ``failure_reason`` (the actor just ran fine). Never touches ``extra``.
        """
        return {
            "TableName": self.table_name,
            "Key": self._key(actor_id),
            "UpdateExpression": (
                "SET #state = :state, state_version = :next, updated_at = :now "
                "REMOVE failure_reason, failure_code, start_error"
            ),
            "ConditionExpression": "state_version = :expected",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {
                ":state": json_attr(state),
                ":next": {"N": str(expected_version + 1)},
                ":expected": {"N": str(expected_version)},
                ":now": {"S": format_time(now)},
            },
        }


class InMemoryActorStore:
    """Items in a dict behind a lock, with the same semantics. Refused inside Lambda."""

    def __init__(self, *, in_lambda: bool | None = None) -> None:
        if _in_lambda() if in_lambda is None else in_lambda:
            raise DurableStoreRequiredError("actor_store")
        self._items: dict[str, dict[str, Any]] = {}
        self.lock = threading.RLock()

    def create(self, actor: ActorRecord) -> ActorRecord:
        actor = with_timestamps(actor, _now())
        with self.lock:
            if actor.actor_id in self._items:
                raise ActorExistsError(actor.actor_id)
            self._items[actor.actor_id] = actor_to_item(actor)
        return actor

    def get(self, actor_id: str) -> ActorRecord | None:
        with self.lock:
            item = self._items.get(actor_id)
            return actor_from_item(item) if item else None

    def get_many(self, actor_ids: Sequence[str]) -> dict[str, ActorRecord]:
        with self.lock:
            return {
                aid: actor_from_item(self._items[aid]) for aid in actor_ids if aid in self._items
            }

    def list(
        self, namespace: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[builtins.list[ActorRecord], str | None]:
        limit = max(1, min(limit, 1000))
        after = decode_cursor(cursor) if cursor else None
        with self.lock:
            ids = sorted(
                aid
                for aid, item in self._items.items()
                if item["namespace"]["S"] == namespace and (after is None or aid > after)
            )
            page = listed(self._items[aid] for aid in ids[:limit])
        more = len(ids) > limit
        return page, encode_cursor(ids[limit - 1]) if more else None

    def set_failure_reason(
        self,
        actor_id: str,
        reason: ActorFailureReason | None,
        *,
        only_if_empty: bool = False,
        only_if_code: str | None = None,
    ) -> bool:
        with self.lock:
            item = self._items.get(actor_id)
            if item is None:
                return False
            current = item.get("failure_code", {}).get("S")
            if only_if_empty and current is not None:
                return False
            if only_if_code is not None and current != only_if_code:
                return False
            item["updated_at"] = {"S": format_time(_now())}
            if reason is None:
                item.pop("failure_reason", None)
                item.pop("failure_code", None)
            else:
                # Round-trip through the decoder like a DynamoDB read would.
                decode_failure_reason(reason.to_json())
                item["failure_reason"] = {"S": json.dumps(reason.to_json())}
                item["failure_code"] = {"S": reason.code}
            return True

    def append_errors(self, actor_id: str, events: Sequence[ErrorEvent], *, cap: int) -> None:
        if not events:
            return
        with self.lock:
            item = self._items.get(actor_id)
            if item is None:
                return
            extra = json.loads(item["extra"]["S"]) if "extra" in item else {}
            new_extra = _append_errors(extra if isinstance(extra, dict) else {}, events, cap=cap)
            item["extra"] = {"S": json.dumps(new_extra)}
            item["extra_rev"] = {"N": str(int(item.get("extra_rev", {"N": "0"})["N"]) + 1)}

    def set_status(
        self,
        actor_id: str,
        status: ActorStatus,
        *,
        last_actor_error: ActorFailed | None = None,
        stop_error: ActorError | None = None,
    ) -> None:
        with self.lock:
            item = self._items.get(actor_id)
            if item is None:
                return
            item["status"] = {"S": status}
            item["updated_at"] = {"S": format_time(_now())}
            if last_actor_error is not None:
                item["last_actor_error"] = {"S": json.dumps(last_actor_error.to_json())}
            if stop_error is not None:
                item["stop_error"] = json_attr(stop_error.to_json())
            elif status == "active":
                item.pop("stop_error", None)

    def set_start_error(self, actor_id: str, error: RunnerPoolError | None) -> None:
        with self.lock:
            item = self._items.get(actor_id)
            if item is None:
                return
            if error is None:
                item.pop("start_error", None)
            else:
                item["start_error"] = json_attr(error.to_json())
            item["updated_at"] = {"S": format_time(_now())}

    def clear_on_init(self, actor_id: str) -> None:
        with self.lock:
            item = self._items.get(actor_id)
            if item is None:
                return
            for name in ("start_error", "failure_reason", "failure_code", "last_actor_error"):
                item.pop(name, None)
            item["updated_at"] = {"S": format_time(_now())}

    def resume(self, actor_id: str) -> bool:
        with self.lock:
            item = self._items.get(actor_id)
            if item is None or item["status"]["S"] != "stopped":
                return False
            item["status"] = {"S": "active"}
            item.pop("stop_error", None)
            item["updated_at"] = {"S": format_time(_now())}
            return True

    def delete(self, actor_id: str) -> bool:
        with self.lock:
            return self._items.pop(actor_id, None) is not None

    def set_last_actor_error(self, actor_id: str, error: ActorFailed | None) -> None:
        with self.lock:
            item = self._items.get(actor_id)
            if item is None:
                return
            if error is None:
                item.pop("last_actor_error", None)
            else:
                item["last_actor_error"] = {"S": json.dumps(error.to_json())}
            item["updated_at"] = {"S": format_time(_now())}

    # Used by InMemoryMessageStore.commit_success, under this store's lock.
    def _check_version(self, actor_id: str, expected_version: int) -> bool:
        item = self._items.get(actor_id)
        return item is not None and int(item["state_version"]["N"]) == expected_version

    def _apply_commit(self, actor_id: str, *, state: Any, now: datetime) -> None:
        item = self._items[actor_id]
        item["state"] = {"S": json.dumps(state)}
        item["state_version"] = {"N": str(int(item["state_version"]["N"]) + 1)}
        item["updated_at"] = {"S": format_time(now)}
        item.pop("failure_reason", None)
        item.pop("failure_code", None)
        item.pop("start_error", None)
