"""``PoolProbesTable`` (hash ``pool_id``): per-pool probe backoff for the pool manager.

A pool with no item is due now. ``claim`` is one conditional write, so overlapping pool manager
invocations never probe the same pool twice in one round; ``reset`` (on a saved runner config or
a cleared error) deletes the item.
"""

from __future__ import annotations

from typing import Any

from adapters.aws import LazyClient, is_conditional_check_failed
from core.models import PoolKey
from core.ports import ProbeState


class DynamoDBProbeStore(LazyClient):
    """``PoolProbesTable``: ``pool_id`` (S), ``failures`` (N), ``next_probe_at`` (N, epoch s)."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client

    @staticmethod
    def _decode(item: dict[str, Any]) -> ProbeState:
        return ProbeState(
            pool_id=item["pool_id"]["S"],
            failures=int(item.get("failures", {}).get("N", "0")),
            next_probe_at=float(item.get("next_probe_at", {}).get("N", "0")),
            last_error_code=item.get("last_error_code", {}).get("S"),
        )

    def get(self, pool: PoolKey) -> ProbeState | None:
        resp = self.client.get_item(
            TableName=self.table_name, Key={"pool_id": {"S": pool.id}}, ConsistentRead=True
        )
        item = resp.get("Item")
        return self._decode(item) if item else None

    def claim(self, pool: PoolKey, *, now: float, lease_s: float) -> ProbeState | None:
        try:
            resp = self.client.update_item(
                TableName=self.table_name,
                Key={"pool_id": {"S": pool.id}},
                UpdateExpression="SET next_probe_at = :lease",
                ConditionExpression="attribute_not_exists(pool_id) OR next_probe_at <= :now",
                ExpressionAttributeValues={
                    ":lease": {"N": repr(now + lease_s)},
                    ":now": {"N": repr(now)},
                },
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if is_conditional_check_failed(exc):
                return None
            raise
        return self._decode(resp["Attributes"])

    def record_failure(
        self, pool: PoolKey, *, failures: int, next_probe_at: float, error_code: str | None
    ) -> None:
        item: dict[str, Any] = {
            "pool_id": {"S": pool.id},
            "failures": {"N": str(failures)},
            "next_probe_at": {"N": repr(next_probe_at)},
        }
        if error_code:
            item["last_error_code"] = {"S": error_code}
        self.client.put_item(TableName=self.table_name, Item=item)

    def reset(self, pool: PoolKey) -> None:
        self.client.delete_item(TableName=self.table_name, Key={"pool_id": {"S": pool.id}})
