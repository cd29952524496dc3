"""Where runner configs live: one ``Protocol``, a DynamoDB store and an in-memory store.

Header values are secrets but must be kept: the actor host sends them to the endpoint. The
DynamoDB item holds them as plain string attributes (encrypted at rest by DynamoDB); the
``RunnerConfig`` model redacts them whenever it is dumped to JSON, so the API never returns them.
"""

from __future__ import annotations

import builtins
import json
import threading
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from adapters.aws import LazyClient
from adapters.settings import in_lambda as _in_lambda
from core.errors import DurableStoreRequiredError
from core.models import PoolKey, RunnerConfig


@runtime_checkable
class RunnerConfigStore(Protocol):
    """Runner configs by pool ``(namespace, runner_name)``."""

    def put(self, config: RunnerConfig) -> None:
        """Create or replace the config of ``config.pool``."""

    def get(self, pool: PoolKey) -> RunnerConfig | None:
        """The config of ``pool``, or ``None``."""

    def delete(self, pool: PoolKey) -> bool:
        """Remove the config of ``pool``; ``True`` if there was one."""

    def list(self, namespace: str) -> builtins.list[RunnerConfig]:
        """Every config in ``namespace``, ordered by ``runner_name``."""

    def list_all(self) -> builtins.list[RunnerConfig]:
        """Every config of every namespace (the pool manager's round), ordered by pool id."""


def config_to_document(config: RunnerConfig) -> dict[str, Any]:
    """The config as JSON-safe data WITH the real header values (for storage only)."""
    doc = config.model_dump(mode="json", exclude={"headers"})
    doc["headers"] = config.header_values()
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


class DynamoDBRunnerConfigStore(LazyClient):
    """``RunnerConfigsTable``: hash ``namespace``, range ``runner_name``; one item per config."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client

    @staticmethod
    def _key(pool: PoolKey) -> dict[str, Any]:
        return {"namespace": {"S": pool.namespace}, "runner_name": {"S": pool.runner_name}}

    def put(self, config: RunnerConfig) -> None:
        doc = config_to_document(config)
        item = {name: _to_dynamo(value) for name, value in doc.items() if name not in _AS_JSON}
        for name in _AS_JSON:
            # Floats as JSON text: DynamoDB numbers cannot hold e.g. 5e-324 (magnitude >= 1e-130).
            item[name] = {"S": json.dumps(doc[name], separators=(",", ":"))}
        self.client.put_item(TableName=self.table_name, Item=item)

    def get(self, pool: PoolKey) -> RunnerConfig | None:
        resp = self.client.get_item(
            TableName=self.table_name, Key=self._key(pool), ConsistentRead=True
        )
        item = resp.get("Item")
        return self._decode(item) if item else None

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
        doc = {name: _from_dynamo(value) for name, value in item.items()}
        for name in _AS_JSON:
            if isinstance(doc.get(name), str):
                doc[name] = json.loads(doc[name])
        return config_from_document(doc)


class InMemoryRunnerConfigStore:
    """A dict behind a lock, for unit tests and one-process tools. Refused inside Lambda."""

    def __init__(self, *, in_lambda: bool | None = None) -> None:
        if _in_lambda() if in_lambda is None else in_lambda:
            raise DurableStoreRequiredError("runner_config_store")
        self._configs: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def put(self, config: RunnerConfig) -> None:
        # Keep a document, not the object, so reads behave like the DynamoDB round trip.
        with self._lock:
            self._configs[(config.namespace, config.runner_name)] = config_to_document(config)

    def get(self, pool: PoolKey) -> RunnerConfig | None:
        with self._lock:
            doc = self._configs.get((pool.namespace, pool.runner_name))
        return config_from_document(doc) if doc is not None else None

    def delete(self, pool: PoolKey) -> bool:
        with self._lock:
            return self._configs.pop((pool.namespace, pool.runner_name), None) is not None

    def list(self, namespace: str) -> builtins.list[RunnerConfig]:
        with self._lock:
            docs = [doc for (ns, _), doc in sorted(self._configs.items()) if ns == namespace]
        return [config_from_document(doc) for doc in docs]

    def list_all(self) -> builtins.list[RunnerConfig]:
        with self._lock:
            docs = [doc for _, doc in sorted(self._configs.items())]
        return [config_from_document(doc) for doc in docs]
