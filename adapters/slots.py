"""Runner slots: at most ``max_runners`` executions per pool at once, across every Lambda.

``SlotsTable`` holds one item per taken slot (``pool_id``, ``slot`` = "0".."n-1") with an owner
and ``expires_at`` (epoch s). Taking a slot is a conditional put that succeeds only if the slot
is free or its lease ran out, so a crashed Lambda's slot comes back by itself when its lease
(the request lifespan plus a margin) ends; DynamoDB's TTL on ``expires_at`` only sweeps the
leftovers later, the condition is what frees the slot.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from adapters.aws import LazyClient, is_conditional_check_failed
from adapters.settings import in_lambda as _in_lambda
from core.exceptions import DurableStoreRequiredError
from core.ports import SlotLease


def _order(total: int, rng: random.Random, start: int | None) -> list[int]:
    # Start at a given or random slot so concurrent acquirers rarely race for the same item.
    first = rng.randrange(total) if start is None else start % total
    return [(first + i) % total for i in range(total)]


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
        for slot in _order(max(total, 1), self._rng, start):
            try:
                self.client.put_item(
                    TableName=self.table_name,
                    Item={
                        "pool_id": {"S": pool_id},
                        "slot": {"S": str(slot)},
                        "owner": {"S": owner},
                        "expires_at": {"N": repr(expires)},
                    },
                    ConditionExpression="attribute_not_exists(slot) OR expires_at < :now",
                    ExpressionAttributeValues={":now": {"N": repr(now)}},
                )
            except Exception as exc:
                if is_conditional_check_failed(exc):
                    continue
                raise
            return SlotLease(pool_id=pool_id, slot=slot, owner=owner, expires_at=expires)
        return None

    def release_op(self, lease: SlotLease) -> dict[str, Any]:
        """The release as a TransactWriteItems ``Delete`` (so a commit can carry it)."""
        return {
            "TableName": self.table_name,
            "Key": {"pool_id": {"S": lease.pool_id}, "slot": {"S": str(lease.slot)}},
            "ConditionExpression": "#o = :owner",
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {":owner": {"S": lease.owner}},
        }

    def release(self, lease: SlotLease) -> None:
        try:
            self.client.delete_item(**self.release_op(lease))
        except Exception as exc:
            if not is_conditional_check_failed(exc):  # someone took over an expired lease
                raise

    def held(self, pool_id: str, *, now: float) -> int:
        resp = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pool_id = :p",
            FilterExpression="expires_at >= :now",
            ExpressionAttributeValues={":p": {"S": pool_id}, ":now": {"N": repr(now)}},
            ConsistentRead=True,
        )
        return int(resp.get("Count", 0))


class InMemorySlotStore:
    """Slot leases in a dict. Refused inside Lambda (the cap must hold across Lambdas)."""

    def __init__(self, *, in_lambda: bool | None = None, seed: int | None = None) -> None:
        if _in_lambda() if in_lambda is None else in_lambda:
            raise DurableStoreRequiredError("actor_store")
        self._slots: dict[tuple[str, int], tuple[str, float]] = {}
        self._lock = threading.Lock()
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
        with self._lock:
            for slot in _order(max(total, 1), self._rng, start):
                current = self._slots.get((pool_id, slot))
                if current is None or current[1] < now:
                    self._slots[(pool_id, slot)] = (owner, now + lease_s)
                    return SlotLease(pool_id, slot, owner, now + lease_s)
        return None

    def release(self, lease: SlotLease) -> None:
        self.release_if_held(lease)

    def release_if_held(self, lease: SlotLease) -> bool:
        """Release; ``True`` if this lease still held the slot."""
        with self._lock:
            current = self._slots.get((lease.pool_id, lease.slot))
            if current is not None and current[0] == lease.owner:
                del self._slots[(lease.pool_id, lease.slot)]
                return True
            return False

    def held(self, pool_id: str, *, now: float) -> int:
        with self._lock:
            return sum(1 for (p, _), (_, exp) in self._slots.items() if p == pool_id and exp >= now)
