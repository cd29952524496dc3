"""The in-memory runner config store: a dict behind a lock, with DynamoDB's codec and size check."""

from __future__ import annotations

import builtins
import threading
from typing import Any

from adapters.dynamodb.runner_configs import (
    REVISION,
    config_from_document,
    config_to_document,
    config_to_item,
)
from adapters.settings import in_lambda as _in_lambda
from core.exceptions import DurableStoreRequiredError
from core.models import PoolKey, RunnerConfig


class InMemoryRunnerConfigStore:
    """A dict behind a lock, for unit tests and one-process tools. Refused inside Lambda."""

    def __init__(self, *, in_lambda: bool | None = None) -> None:
        if _in_lambda() if in_lambda is None else in_lambda:
            raise DurableStoreRequiredError("runner_config_store")
        self._configs: dict[tuple[str, str], dict[str, Any]] = {}
        self._revisions: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def put(self, config: RunnerConfig) -> None:
        # Keep a document, not the object, so reads behave like the DynamoDB round trip.
        with self._lock:
            self._store(config)

    def _store(self, config: RunnerConfig) -> None:
        key = (config.namespace, config.runner_name)
        item = config_to_item(config)  # the same size check as DynamoDB's
        self._configs[key] = config_to_document(config)
        self._revisions[key] = item[REVISION]["S"]

    def put_if(self, config: RunnerConfig, revision: str | None) -> bool:
        with self._lock:
            if self._revisions.get((config.namespace, config.runner_name)) != revision:
                return False
            self._store(config)
            return True

    def get(self, pool: PoolKey) -> RunnerConfig | None:
        found = self.get_with_revision(pool)
        return found[0] if found is not None else None

    def get_with_revision(self, pool: PoolKey) -> tuple[RunnerConfig, str] | None:
        key = (pool.namespace, pool.runner_name)
        with self._lock:
            doc = self._configs.get(key)
            revision = self._revisions.get(key, "")
        return (config_from_document(doc), revision) if doc is not None else None

    def delete(self, pool: PoolKey) -> bool:
        with self._lock:
            self._revisions.pop((pool.namespace, pool.runner_name), None)
            return self._configs.pop((pool.namespace, pool.runner_name), None) is not None

    def list(self, namespace: str) -> builtins.list[RunnerConfig]:
        with self._lock:
            docs = [doc for (ns, _), doc in sorted(self._configs.items()) if ns == namespace]
        return [config_from_document(doc) for doc in docs]

    def list_all(self) -> builtins.list[RunnerConfig]:
        with self._lock:
            docs = [doc for _, doc in sorted(self._configs.items())]
        return [config_from_document(doc) for doc in docs]
