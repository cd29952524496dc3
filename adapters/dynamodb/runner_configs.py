"""``RunnerConfigsTable``: one item per pool config, and the codec the in-memory fake shares.

Header values are secrets but must be kept: the actor host sends them to the endpoint. The
DynamoDB item holds them as plain string attributes (encrypted at rest by DynamoDB); the
``RunnerConfig`` model redacts them whenever it is dumped to JSON, so the API never returns them.
"""

from __future__ import annotations

import builtins
import json
import uuid
from decimal import Decimal
from typing import Any, Final

from adapters.aws import LazyClient, is_conditional_check_failed
from core.models import PoolKey, RunnerConfig
from core.times import format_time


def config_to_document(config: RunnerConfig) -> dict[str, Any]:
    """The config as JSON-safe data WITH the real header values (for storage only)."""
    doc = config.model_dump(mode="json", exclude={"headers"})
    doc["headers"] = config.header_values()
    if config.updated_at is not None:
        doc["updated_at"] = format_time(config.updated_at)  # the stores' one time format
    return doc


def config_from_document(doc: dict[str, Any]) -> RunnerConfig:
    """Inverse of ``config_to_document``."""
    return RunnerConfig.model_validate(doc)


def _to_dynamo(value: Any) -> Any:
    """JSON data -> boto3 attribute values (floats become ``Decimal``, as boto3 requires)."""
    from boto3.dynamodb.types import TypeSerializer

    as_decimals = json.loads(json.dumps(value), parse_float=Decimal)
    return TypeSerializer().serialize(as_decimals)


def _from_dynamo(attr: Any) -> Any:
    """boto3 attribute value -> JSON data (``Decimal`` back to int or float)."""
    from boto3.dynamodb.types import TypeDeserializer

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return plain(TypeDeserializer().deserialize(attr))


_AS_JSON = ("error_policy",)
"""Fields stored as a JSON string attribute rather than a map."""

REVISION: Final = "revision"
"""Item attribute, a fresh random token per write: what a conditional ``put_if`` compares
(a token, not a counter: two unconditional writers can never produce the same one)."""

MAX_ITEM_BYTES: Final = 400 * 1024
"""DynamoDB's item size limit (names and values together)."""


class ItemTooLargeError(ValueError):
    """The item would exceed DynamoDB's 400 KB; raised before any write."""

    def __init__(self, size: int, limit: int = MAX_ITEM_BYTES) -> None:
        super().__init__(f"item of {size} bytes exceeds {limit}")
        self.size = size
        self.limit = limit


def attribute_size(value: Any) -> int:
    """Bytes DynamoDB counts for one attribute value (documented rules, rounded up)."""
    ((kind, inner),) = value.items()
    if kind in ("S", "B"):
        return len(inner.encode("utf-8")) if kind == "S" else len(inner)
    if kind == "N":
        return len(str(inner)) // 2 + 2  # about one byte per two digits, plus one
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + 1 + attribute_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in inner)
    return sum(len(str(v).encode("utf-8")) for v in inner)  # SS, NS, BS


def item_size(item: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for ``item``: every attribute name plus its value."""
    return sum(len(name.encode("utf-8")) + attribute_size(v) for name, v in item.items())


def config_to_item(config: RunnerConfig) -> dict[str, Any]:
    """The DynamoDB item of ``config`` with a fresh revision; ``ItemTooLargeError`` if it
    would not fit (checked before any write)."""
    doc = config_to_document(config)
    item = {name: _to_dynamo(value) for name, value in doc.items() if name not in _AS_JSON}
    for name in _AS_JSON:
        # Floats as JSON text: DynamoDB numbers cannot hold e.g. 5e-324 (magnitude >= 1e-130).
        item[name] = {"S": json.dumps(doc[name], separators=(",", ":"))}
    item[REVISION] = {"S": uuid.uuid4().hex}
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise ItemTooLargeError(size)
    return item


class DynamoDBRunnerConfigStore(LazyClient):
    """``RunnerConfigsTable``: hash ``namespace``, range ``runner_name``; one item per config."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client

    @staticmethod
    def _key(pool: PoolKey) -> dict[str, Any]:
        return {"namespace": {"S": pool.namespace}, "runner_name": {"S": pool.runner_name}}

    _item = staticmethod(config_to_item)

    def put(self, config: RunnerConfig) -> None:
        self.client.put_item(TableName=self.table_name, Item=self._item(config))

    def put_if(self, config: RunnerConfig, revision: str | None) -> bool:
        item = self._item(config)
        kwargs: dict[str, Any]
        if revision is None:
            kwargs = {
                "ConditionExpression": "attribute_not_exists(#ns)",
                "ExpressionAttributeNames": {"#ns": "namespace"},
            }
        elif revision == "":  # written before revisions existed
            kwargs = {
                "ConditionExpression": "attribute_exists(#ns) AND attribute_not_exists(#rev)",
                "ExpressionAttributeNames": {"#ns": "namespace", "#rev": REVISION},
            }
        else:
            kwargs = {
                "ConditionExpression": "#rev = :rev",
                "ExpressionAttributeNames": {"#rev": REVISION},
                "ExpressionAttributeValues": {":rev": {"S": revision}},
            }
        try:
            self.client.put_item(TableName=self.table_name, Item=item, **kwargs)
        except Exception as exc:
            if is_conditional_check_failed(exc):
                return False
            raise
        return True

    def get(self, pool: PoolKey) -> RunnerConfig | None:
        found = self.get_with_revision(pool)
        return found[0] if found is not None else None

    def get_with_revision(self, pool: PoolKey) -> tuple[RunnerConfig, str] | None:
        resp = self.client.get_item(
            TableName=self.table_name, Key=self._key(pool), ConsistentRead=True
        )
        item = resp.get("Item")
        if not item:
            return None
        return self._decode(item), str(item.get(REVISION, {}).get("S", ""))

    def delete(self, pool: PoolKey) -> bool:
        resp = self.client.delete_item(
            TableName=self.table_name, Key=self._key(pool), ReturnValues="ALL_OLD"
        )
        return bool(resp.get("Attributes"))

    def list(self, namespace: str) -> builtins.list[RunnerConfig]:
        configs: builtins.list[RunnerConfig] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#ns = :ns",
            "ExpressionAttributeNames": {"#ns": "namespace"},
            "ExpressionAttributeValues": {":ns": {"S": namespace}},
            "ConsistentRead": True,
        }
        while True:
            resp = self.client.query(**kwargs)
            configs.extend(self._decode(item) for item in resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if not last:
                return configs
            kwargs["ExclusiveStartKey"] = last

    def list_all(self) -> builtins.list[RunnerConfig]:
        configs: builtins.list[RunnerConfig] = []
        kwargs: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": True}
        while True:
            resp = self.client.scan(**kwargs)
            configs.extend(self._decode(item) for item in resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if not last:
                return sorted(configs, key=lambda c: (c.namespace, c.runner_name))
            kwargs["ExclusiveStartKey"] = last

    @staticmethod
    def _decode(item: dict[str, Any]) -> RunnerConfig:
        doc = {name: _from_dynamo(value) for name, value in item.items() if name != REVISION}
        for name in _AS_JSON:
            if isinstance(doc.get(name), str):
                doc[name] = json.loads(doc[name])
        return config_from_document(doc)
