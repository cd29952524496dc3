"""Runner slots: at most ``max_runners`` executions per pool at once, across every Lambda.

``SlotsTable`` holds one item per taken slot (``pool_id``, ``slot`` = "0".."n-1") with an owner
and ``expires_at`` (epoch s). Taking a slot is a conditional put that succeeds only if the slot
is free or its lease ran out, so a crashed Lambda's slot comes back by itself when its lease
(the request lifespan plus a margin) ends; DynamoDB's TTL on ``expires_at`` only sweeps the
leftovers later, the condition is what frees the slot. A successful commit releases its slot in
the same transaction (``commit.py``).
"""

from __future__ import annotations

import random
from typing import Any

from adapters.aws import LazyClient
from adapters.dynamodb import expressions as ex
from adapters.dynamodb.expressions import Cond, Item, Op, Query, Write
from core.ports import SlotLease


def _order(total: int, rng: random.Random, start: int | None) -> list[int]:
    # Start at a given or random slot so concurrent acquirers rarely race for the same item.
    first = rng.randrange(total) if start is None else start % total
    return [(first + i) % total for i in range(total)]


def slot_key(lease: SlotLease) -> Item:
    """The key of a slot item."""
    return {"pool_id": {"S": lease.pool_id}, "slot": {"S": str(lease.slot)}}


def slot_held(lease: SlotLease) -> Cond:
    """``lease`` still holds its slot (nobody took over after it ran out)."""
    return ex.eq("owner", {"S": lease.owner})


class DynamoDBSlotStore(LazyClient):
    """``SlotsTable`` through the low-level boto3 client."""

    def __init__(self, table_name: str, client: Any = None, *, seed: int | None = None) -> None:
        self.table_name = table_name
        self._client = client
        self._rng = random.Random(seed)

    def acquire(
        self,
        pool_id: str,
        *,
        total: int,
        owner: str,
        lease_s: float,
        now: float,
        start: int | None = None,
    ) -> SlotLease | None:
        expires = now + lease_s
        free = ex.missing("slot") | ex.lt("expires_at", {"N": repr(now)})
        for slot in _order(max(total, 1), self._rng, start):
            lease = SlotLease(pool_id=pool_id, slot=slot, owner=owner, expires_at=expires)
            item = {**slot_key(lease), "owner": {"S": owner}, "expires_at": {"N": repr(expires)}}
            if self._put(item, free):
                return lease
        return None

    def _put(self, item: Item, when: Cond) -> bool:
        put = ex.put_request(self.table_name, item, when)
        return ex.unless_refused(lambda: self.client.put_item(**put)) is not None

    def release(self, lease: SlotLease) -> None:
        # Refused when someone took over our expired lease: their slot stays theirs.
        self._delete(slot_key(lease), slot_held(lease))

    def _delete(self, key: Item, when: Cond) -> bool:
        delete = ex.delete_request(self.table_name, key, when)
        return ex.unless_refused(lambda: self.client.delete_item(**delete)) is not None

    def held(self, pool_id: str, *, now: float) -> int:
        live = ex.ge("expires_at", {"N": repr(now)})
        query = Query(("pool_id", pool_id), "slot", ("pool_id",), where=live, consistent=True)
        return len(self._query(query)[0])

    def _query(self, query: Query) -> tuple[list[Item], Item | None]:
        resp = self.client.query(**query.request(self.table_name))
        return list(resp.get("Items", [])), resp.get("LastEvaluatedKey")

    def op(self, key: Item, write: Write, *, delete: bool = False) -> Op:
        """``write`` on the item ``key`` of this table, as a transaction item."""
        return Op(self, key, write, delete)
