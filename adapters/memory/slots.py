"""Slot leases in memory: ``DynamoDBSlotStore`` on dict items. Refused inside Lambda (the cap
must hold across Lambdas)."""

from __future__ import annotations

import random

from adapters.dynamodb.slots import DynamoDBSlotStore
from adapters.memory.table import MemoryTable


class InMemorySlotStore(MemoryTable, DynamoDBSlotStore):
    """The slots table in a dict."""

    key_attrs = ("pool_id", "slot")

    def __init__(self, *, in_lambda: bool | None = None, seed: int | None = None) -> None:
        self._open("actor_store", in_lambda)
        self.table_name = "memory:slots"
        self._rng = random.Random(seed)
