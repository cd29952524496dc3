"""Messages in memory: ``DynamoDBMessageStore`` on dict items; its commit checks and writes the
message, actor and slot items under the one lock of the fakes. Refused inside Lambda."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

from adapters.clock import SYSTEM_CLOCK
from adapters.dynamodb.commit import CommitCancelledError, DynamoDBCommit
from adapters.dynamodb.expressions import Op
from adapters.dynamodb.messages import DynamoDBMessageStore
from adapters.memory.actors import InMemoryActorStore
from adapters.memory.slots import InMemorySlotStore
from adapters.memory.table import LOCK, MemoryTable
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
        )
