"""Where pool error tracker state lives: one ``Protocol``, a DynamoDB store, an in-memory store."""

from adapters.pool_errors.dynamodb import DynamoDBPoolErrorStore
from adapters.pool_errors.memory import InMemoryPoolErrorStore
from core.exceptions import StoreReadFailedError
from core.ports import ApplyResult, PoolErrorStore

__all__ = [
    "ApplyResult",
    "DynamoDBPoolErrorStore",
    "InMemoryPoolErrorStore",
    "PoolErrorStore",
    "StoreReadFailedError",
]
