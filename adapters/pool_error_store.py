"""The pool error store port and its two backends (they live in ``adapters.pool_errors``)."""

from adapters.pool_errors import (
    DynamoDBPoolErrorStore,
    InMemoryPoolErrorStore,
    StoreReadFailedError,
)
from core.ports import ApplyResult, PoolErrorStore

__all__ = [
    "ApplyResult",
    "DynamoDBPoolErrorStore",
    "InMemoryPoolErrorStore",
    "PoolErrorStore",
    "StoreReadFailedError",
]
