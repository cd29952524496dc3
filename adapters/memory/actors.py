"""Actors in memory: ``DynamoDBActorStore`` on dict items. Refused inside Lambda."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from pydantic import JsonValue

from adapters.clock import SYSTEM_CLOCK
from adapters.dynamodb.actors import DynamoDBActorStore, actor_from_item, actor_key
from adapters.dynamodb.commit import actor_write
from adapters.memory.table import MemoryTable
from core.models import ActorRecord
from core.ports import Clock


class InMemoryActorStore(MemoryTable, DynamoDBActorStore):
    """The actors table in a dict."""

    key_attrs = ("actor_id",)

    def __init__(
        self,
        *,
        in_lambda: bool | None = None,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._open("actor_store", in_lambda)
        super().__init__("memory:actors", clock=clock, sleep=sleep, rand=rand)

    def get_many(self, actor_ids: Sequence[str]) -> dict[str, ActorRecord]:
        with self.lock:
            items = [self._get(actor_key(aid)) for aid in dict.fromkeys(actor_ids)]
        return {i["actor_id"]["S"]: actor_from_item(i) for i in items if i is not None}

    def _apply_commit(self, actor_id: str, *, state: JsonValue, now: datetime) -> None:
        """The actor half of a commit without its version check (a test's concurrent writer)."""
        write = actor_write(expected_version=0, state=state, now=now)
        self._update(actor_key(actor_id), replace(write, when=None))
