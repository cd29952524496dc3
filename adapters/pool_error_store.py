"""The pool error store port and its two backends (they live in ``adapters.pool_errors``)."""

from adapters.pool_errors import (
    ApplyResult,
    DynamoDBPoolErrorStore,
    InMemoryPoolErrorStore,
    PoolErrorStore,
    StoreReadFailedError,
)

__all__ = [
    "ApplyResult",
    "DynamoDBPoolErrorStore",
    "InMemoryPoolErrorStore",
    "PoolErrorStore",
    "StoreReadFailedError",
]
