"""Messages in ``MessagesTable``: the message records and the execution's writes to them.

The item (``items.py``) carries the execution's bookkeeping beside the record:

- ``lease_owner``/``lease_until`` (epoch s): the execution that holds the message. ``claim``
  takes it only when nobody holds it or the holder's lease ran out (a crashed Lambda), so a
  duplicate delivery cannot run next to the original (``execution_busy``), and a commit whose
  lease was taken over is refused (``execution_lease_lost``).
- ``dlq_sent_at``/``replied_at``: an outbox. The final status is written first, then the DLQ
  send and the reply happen and are marked; a redelivery of a final message finishes whatever
  side effect is not marked yet, so nothing is lost and, once marked, nothing is sent twice.

Each write is one ``Write`` value (``expressions.py``); ``adapters.memory.messages`` runs the
same values on dict items.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar, Final

from pydantic import JsonValue

from adapters.aws import LazyClient
from adapters.clock import SYSTEM_CLOCK
from adapters.dynamodb.actors import DynamoDBActorStore
from adapters.dynamodb.commit import DynamoDBCommit, Success
from adapters.dynamodb.expressions import (
    Cond,
    Copy,
    Exists,
    Item,
    Op,
    Query,
    Write,
    among,
    eq,
    missing,
    put_request,
    unless_refused,
    update_request,
)
from adapters.dynamodb.items import (
    FINAL_REMOVES,
    NOT_FINAL,
    RUNNING_ATTRS,
    RUNNING_SHARDS,
    decode_message_cursor,
    encode_message_cursor,
    final_fields,
    held_by,
    json_attr,
    message_key,
    message_to_item,
    open_key,
    running_shard,
    stored_from_item,
    unheld,
    with_timestamps,
)
from adapters.dynamodb.slots import DynamoDBSlotStore
from core.exceptions import StoreCommitFailedError
from core.models import RETRYABLE_STATUSES, TERMINAL_STATUSES, MessageRecord, MessageStatus
from core.ports import Claim, Clock, Disposition, Effect, ReopenOutcome, SlotLease, StoredMessage
from core.times import format_time

OPEN_INDEX: Final = "open_by_actor"
RUNNING_INDEX: Final = "running_by_shard"

_EFFECT_ATTR: Final[dict[str, str]] = {"dlq": "dlq_sent_at", "reply": "replied_at"}
_EXISTS: Final = Exists("message_id")
_LEASE: Final = ("lease_owner", "lease_until")
_KEYS: Final = ("actor_id", "message_id")


def _s(text: str) -> dict[str, str]:
    return {"S": text}


def _at(now: datetime) -> dict[str, str]:
    return {"S": format_time(now)}


class DynamoDBMessageStore(LazyClient):
    """``MessagesTable`` through the low-level boto3 client.

    ``actors`` (the actors table) is needed only by ``commit_success``, whose one
    TransactWriteItems (``commit.py``) spans both tables (and the slots table when ``slots`` is
    given). ``retention_s`` sets ``expires_at`` (TTL) on records as they become final.
    """

    commit_type: ClassVar[type[DynamoDBCommit]] = DynamoDBCommit

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        *,
        actors: DynamoDBActorStore | None = None,
        slots: DynamoDBSlotStore | None = None,
        retention_s: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table_name, self._client, self._clock = table_name, client, clock
        self.actors, self.slots, self.retention_s = actors, slots, retention_s
        # The commit's retries wait through ``sleep`` (tests pass a no-op).
        self.commit = None if actors is None else self.commit_type(self, actors, slots, sleep)

    def _final(self, now: datetime, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` and what every final write sets (``finished_at``, ``expires_at``)."""
        return {**fields, "updated_at": _at(now), **final_fields(now, self.retention_s)}

    def create(self, message: MessageRecord) -> MessageRecord:
        message = with_timestamps(message, self._clock.now())
        if self._put(message_to_item(message), missing("message_id")):
            return message
        existing = self.get(message.actor_id, message.message_id)
        if existing is None:  # deleted in between: try once more
            return self.create(message)
        return existing

    def load(self, actor_id: str, message_id: str) -> StoredMessage | None:
        item = self._get(message_key(actor_id, message_id))
        return stored_from_item(item) if item else None

    def get(self, actor_id: str, message_id: str) -> MessageRecord | None:
        stored = self.load(actor_id, message_id)
        return stored.record if stored else None

    def list_running(self, older_than: datetime, limit: int = 100) -> list[MessageRecord]:
        limit = max(1, limit)
        out: list[MessageRecord] = []
        for shard in range(RUNNING_SHARDS):
            query = Query(
                hash=("running_shard", str(shard)),
                range="running_since",
                keys=_KEYS,
                index=RUNNING_INDEX,
                below=format_time(older_than),
                limit=limit,
            )
            got = 0
            while got < limit:
                items, last = self._query(query)
                for item in items:
                    stored = stored_from_item(item)
                    if stored.record.status == "running":
                        out.append(stored.record)
                        got += 1
                if not last:
                    break
                query = replace(query, start=last)
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
        start = None
        if cursor:
            created, message_id = decode_message_cursor(cursor)
            start = {**message_key(actor_id, message_id), "created_at": _s(created)}
        query = Query(
            hash=("actor_id", actor_id),
            range="created_at",
            keys=_KEYS,
            index="by_actor",
            where=None if status is None else eq("status", _s(status)),
            forward=oldest_first,
            limit=limit,
            start=start,
        )
        out: list[MessageRecord] = []
        while True:
            items, last = self._query(query)
            for n, item in enumerate(items):
                out.append(stored_from_item(item).record)
                if len(out) == limit:
                    more = n + 1 < len(items) or bool(last)
                    return out, encode_message_cursor(out[-1]) if more else None
            if not last:
                return out, None
            query = replace(query, start=last)

    def oldest_open(self, actor_id: str) -> tuple[str, str] | None:
        query = Query(
            hash=("actor_id", actor_id), range="open_key", keys=_KEYS, index=OPEN_INDEX, limit=1
        )
        items, _ = self._query(query)
        if not items:
            return None
        return items[0]["message_id"]["S"], items[0]["open_key"]["S"]

    def discard(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> bool:
        ended = self._end_unheld(actor_id, message_id, "discard", error, now, remove=())
        return ended is not None

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
        write = Write(
            set={
                "lease_owner": _s(owner),
                "lease_until": {"N": repr(now.timestamp() + lease_s)},
                "updated_at": _at(now),
            },
            add={"attempts": 1} if count_attempt else {},
            when=_EXISTS & NOT_FINAL & unheld(now),
        )
        item = self._write(actor_id, message_id, write, returning=True)
        if item is not None:
            return Claim("claimed", stored_from_item(item))
        current = self.load(actor_id, message_id)
        if current is None:
            return Claim("missing")
        if current.record.status in TERMINAL_STATUSES:
            return Claim("terminal", current)
        return Claim("busy", current)

    def mark_running(
        self, actor_id: str, message_id: str, *, owner: str, runner_id: str, now: datetime
    ) -> bool:
        fields = {"status": _s("running"), "runner_id": _s(runner_id), "started_at": _at(now)}
        running = {"running_shard": _s(running_shard(actor_id)), "running_since": _at(now)}
        write = Write(set={**fields, "updated_at": _at(now), **running}, when=held_by(owner))
        return self._write(actor_id, message_id, write) is not None

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
        fields = {"status": _s(status), "disposition": _s(disposition), "updated_at": _at(now)}
        if error is not None:
            fields["error"] = json_attr(error)
        remove: tuple[str, ...] = (*_LEASE, *RUNNING_ATTRS)
        if status in TERMINAL_STATUSES:
            fields = self._final(now, fields)
            remove = (*_LEASE, *FINAL_REMOVES)
        elif next_attempt_at is not None:
            fields["next_attempt_at"] = _at(next_attempt_at)
        write = Write(set=fields, remove=remove, when=held_by(owner))
        return self._write(actor_id, message_id, write) is not None

    def release(self, actor_id: str, message_id: str, *, owner: str, now: datetime) -> None:
        write = Write(
            set={"status": _s("pending"), "updated_at": _at(now)},
            remove=(*_LEASE, *RUNNING_ATTRS),
            when=held_by(owner) & NOT_FINAL,
        )
        self._write(actor_id, message_id, write)

    def note_waiting(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> bool:
        write = Write(
            set={"error": json_attr(error), "updated_at": _at(now)},
            when=eq("status", _s("pending")) & missing("lease_owner") & missing("error"),
        )
        return self._write(actor_id, message_id, write) is not None

    def give_up(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> StoredMessage | None:
        item = self._end_unheld(actor_id, message_id, "dead_letter", error, now, remove=_LEASE)
        return stored_from_item(item) if item is not None else None

    def reopen(
        self, actor_id: str, message_id: str, *, now: datetime
    ) -> tuple[ReopenOutcome, StoredMessage | None]:
        current = self.load(actor_id, message_id)
        if current is None:
            return "missing", None
        if current.record.status not in RETRYABLE_STATUSES:
            return "not_retryable", current
        record = current.record
        write = Write(
            set={
                "status": _s("pending"),
                "disposition": _s("retry"),
                "attempt_base": Copy("attempts"),
                "open_key": _s(open_key(record.created_at, record.message_id)),
                "updated_at": _at(now),
            },
            add={"retries": 1},
            remove=(
                "finished_at",
                "expires_at",
                "dlq_sent_at",
                "replied_at",
                "next_attempt_at",
                *_LEASE,
            ),
            when=among("status", sorted(RETRYABLE_STATUSES)),
        )
        item = self._write(actor_id, message_id, write, returning=True)
        if item is None:
            return "not_retryable", self.load(actor_id, message_id)
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
        if self.commit is None:
            raise StoreCommitFailedError(f"{type(self).__name__} needs actors= to commit")
        success = Success(actor_id, message_id, owner, expected_version, state, result, now, slot)
        return self.commit.run(success)

    def mark_effect(self, actor_id: str, message_id: str, effect: Effect, *, now: datetime) -> None:
        write = Write(set={_EFFECT_ATTR[effect]: _at(now)}, when=_EXISTS)
        self._write(actor_id, message_id, write)

    def op(self, key: Item, write: Write, *, delete: bool = False) -> Op:
        """``write`` on the item ``key`` of this table, as a transaction item."""
        return Op(self, key, write, delete)

    def _end_unheld(
        self,
        actor_id: str,
        message_id: str,
        disposition: Disposition,
        error: dict[str, JsonValue],
        now: datetime,
        *,
        remove: tuple[str, ...],
    ) -> Item | None:
        """A message nobody holds (any more) ends ``discarded``/``dead_lettered``; the new
        item, or ``None`` if it is final already or a live execution holds it."""
        status = "discarded" if disposition == "discard" else "dead_lettered"
        fields = {"status": _s(status), "disposition": _s(disposition), "error": json_attr(error)}
        write = Write(
            set=self._final(now, fields),
            remove=(*remove, *FINAL_REMOVES),
            when=_EXISTS & NOT_FINAL & unheld(now),
        )
        return self._write(actor_id, message_id, write, returning=True)

    def _write(
        self, actor_id: str, message_id: str, write: Write, *, returning: bool = False
    ) -> Item | None:
        return self._update(message_key(actor_id, message_id), write, returning=returning)

    def _put(self, item: Item, when: Cond) -> bool:
        put = put_request(self.table_name, item, when)
        return unless_refused(lambda: self.client.put_item(**put)) is not None

    def _get(self, key: Item) -> Item | None:
        item = self.client.get_item(TableName=self.table_name, Key=key, ConsistentRead=True)
        return dict(item["Item"]) if "Item" in item else None

    def _query(self, query: Query) -> tuple[list[Item], Item | None]:
        resp = self.client.query(**query.request(self.table_name))
        return list(resp.get("Items", [])), resp.get("LastEvaluatedKey")

    def _update(self, key: Item, write: Write, *, returning: bool = False) -> Item | None:
        update = update_request(self.table_name, key, write, returning=returning)
        resp = unless_refused(lambda: self.client.update_item(**update))
        return None if resp is None else dict(resp.get("Attributes", {}))
