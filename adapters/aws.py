"""What every AWS adapter shares: a boto3 client made on first use, and ``Error.Code``.

boto3 is imported only when a client is first needed, so importing an adapter stays cheap
(cold start) and loads no AWS SDK.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Final

CONDITIONAL_CHECK_FAILED: Final = "ConditionalCheckFailedException"

# boto3's default session is not thread-safe: clients are made one at a time.
_CLIENT_LOCK: Final = threading.Lock()


class LazyClient:
    """Base of adapters that take a boto3 ``client`` or make one for ``service`` on first use."""

    service: ClassVar[str] = "dynamodb"
    _client: Any = None

    def _new_client(self) -> Any:
        """A new boto3 client (override to pass a ``Config``)."""
        import boto3

        return boto3.client(self.service)

    @property
    def client(self) -> Any:
        """The boto3 client given to the constructor, else one made now and kept."""
        if self._client is None:
            with _CLIENT_LOCK:
                if self._client is None:
                    self._client = self._new_client()
        return self._client


def error_code(exc: BaseException) -> str | None:
    """``Error.Code`` of a botocore ``ClientError``; ``None`` for any other exception."""
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code else None


def is_conditional_check_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is DynamoDB refusing a write because its condition was false."""
    return error_code(exc) == CONDITIONAL_CHECK_FAILED


class DeferredClient:
    """A boto3 client made on its first use, then shared: for a client an invocation may not
    need at all (the actor host's SQS calls happen only on failures, hand-backs and replies)."""

    def __init__(self, service: str, **kwargs: Any) -> None:
        self._service = service
        self._kwargs = kwargs
        self._made: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._made is None:
            with _CLIENT_LOCK:
                if self._made is None:
                    import boto3

                    self._made = boto3.client(self._service, **self._kwargs)
        return getattr(self._made, name)
