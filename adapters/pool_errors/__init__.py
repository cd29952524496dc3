"""Where pool error tracker state lives: one ``Protocol``, a DynamoDB store, an in-memory store."""

from adapters.pool_errors.dynamodb import DynamoDBPoolErrorStore
from adapters.pool_errors.memory import InMemoryPoolErrorStore
from adapters.pool_errors.store import ApplyResult, PoolErrorStore
from core.errors import StoreReadFailedError

__all__ = [
    "ApplyResult",
    "DynamoDBPoolErrorStore",
    "InMemoryPoolErrorStore",
    "PoolErrorStore",
    "StoreReadFailedError",
]
