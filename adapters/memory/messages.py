"""Messages in memory: ``DynamoDBMessageStore`` on dict items; its commit checks and writes the
message, actor and slot items under the one lock of the fakes. Refused inside Lambda."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import cast

from adapters.clock import SYSTEM_CLOCK
from adapters.dynamodb.commit import CommitCancelledError, DynamoDBCommit
from adapters.dynamodb.expressions import Op
from adapters.dynamodb.items import (
    decode_message_cursor,
    encode_message_cursor,
    format_time,
    stored_from_item,
)
from adapters.dynamodb.messages import DynamoDBMessageStore
from adapters.memory.actors import InMemoryActorStore
from adapters.memory.slots import InMemorySlotStore
from adapters.memory.table import LOCK, MemoryTable
from core.models import MessageRecord, MessageStatus
from core.ports import Clock


class MemoryCommit(DynamoDBCommit):
    """The commit's transaction on the fakes' items: all conditions, then all writes, under
    the one lock (a failed condition cancels it with DynamoDB's reasons)."""

    def _transact(self, items: list[dict[str, Op]]) -> None:
        ops = [op for item in items for op in item.values()]
        with LOCK:
            ok = [cast(MemoryTable, op.table)._holds(op.key, op.write.when) for op in ops]
            if not all(ok):
                raise CommitCancelledError(["None" if o else "ConditionalCheckFailed" for o in ok])
            for op in ops:
                cast(MemoryTable, op.table)._apply(op.key, None if op.delete else op.write)


class InMemoryMessageStore(MemoryTable, DynamoDBMessageStore):
    """The messages table in a dict. ``actors`` is needed only by ``commit_success``."""

    key_attrs = ("actor_id", "message_id")
    commit_type = MemoryCommit

    def __init__(
        self,
        *,
        actors: InMemoryActorStore | None = None,
        slots: InMemorySlotStore | None = None,
        in_lambda: bool | None = None,
        retention_s: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        # The message record is the idempotency anchor of every execution.
        self._open("idempotency_store", in_lambda)
        super().__init__(
            "memory:messages",
            actors=actors,
            slots=slots,
            retention_s=retention_s,
            clock=clock,
            sleep=sleep,
            rand=rand,
        )

    def list_running(self, older_than: datetime, limit: int = 100) -> list[MessageRecord]:
        cutoff = format_time(older_than)
        with self.lock:
            items = sorted(
                (
                    i
                    for i in self._scan()
                    if i["status"]["S"] == "running"
                    and "running_since" in i
                    and i["running_since"]["S"] < cutoff
                ),
                key=lambda i: str(i["updated_at"]["S"]),
            )
        return [stored_from_item(i).record for i in items[: max(1, limit)]]

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
        with self.lock:
            keyed = sorted(
                ((i.get("created_at", {}).get("S", ""), i["message_id"]["S"]), i)
                for i in self._scan()
                if i["actor_id"]["S"] == actor_id
            )
        if not oldest_first:
            keyed.reverse()
        if after is not None:
            keyed = [(k, i) for k, i in keyed if (k > after if oldest_first else k < after)]
        records = [
            stored_from_item(i).record
            for _, i in keyed
            if status is None or i["status"]["S"] == status
        ]
        page = records[:limit]
        return page, encode_message_cursor(page[-1]) if len(records) > limit else None

    def oldest_open(self, actor_id: str) -> tuple[str, str] | None:
        with self.lock:
            keys = sorted(
                (i["open_key"]["S"], i["message_id"]["S"])
                for i in self._scan()
                if i["actor_id"]["S"] == actor_id and "open_key" in i
            )
        return (keys[0][1], keys[0][0]) if keys else None
