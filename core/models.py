"""Domain records shared by every layer: pools, runner configs, actors, messages, error policy.

Pure pydantic; stores translate these to and from items, the API to and from JSON.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from core.errors import ActorFailed, FailureReasonField

NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME_RE: Final = re.compile(NAME_PATTERN)

RESERVED_HEADER_PREFIX: Final = "x-runner-"
RESERVED_HEADERS: Final = frozenset(
    {"accept", "content-type", "content-length", "host", "transfer-encoding", "connection"}
)
"""Headers the kit sets itself; a runner config may not set these (nor any ``x-runner-*``)."""

MAX_REQUEST_LIFESPAN_S: Final = 900
"""A Lambda runs at most 15 minutes, so a runner request cannot be held longer."""

REDACTED: Final = "***"


def is_reserved_header(name: str) -> bool:
    """True if the kit owns this header name (case-insensitive)."""
    lowered = name.strip().lower()
    return lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIX)


class PoolKey(BaseModel):
    """A runner pool: ``(namespace, runner_name)``; ``id`` is ``namespace/runner_name``."""

    model_config = ConfigDict(frozen=True)

    namespace: str = Field(pattern=NAME_PATTERN)
    runner_name: str = Field(pattern=NAME_PATTERN)

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.runner_name}"

    @classmethod
    def parse(cls, pool_id: str) -> PoolKey:
        """Inverse of ``id``."""
        namespace, sep, runner_name = pool_id.partition("/")
        if not sep:
            raise ValueError(f"pool id must be 'namespace/runner_name', got {pool_id!r}")
        return cls(namespace=namespace, runner_name=runner_name)

    def __str__(self) -> str:
        return self.id


class ErrorPolicy(BaseModel):
    """What a failed execution does to the actor, to the message, and how retries back off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    on_actor: Literal["continue", "stop"] = "continue"
    on_message: Literal["retry", "discard", "dead_letter"] = "retry"
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_base_s: float = Field(default=2.0, gt=0, le=3600)
    backoff_max_s: float = Field(default=900.0, gt=0, le=43_200)  # SQS visibility max is 12 h


class RunnerConfig(BaseModel):
    """A pool's serverless endpoint and how it is driven. Header values are secrets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(pattern=NAME_PATTERN)
    runner_name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(min_length=1, max_length=2048)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    request_lifespan: int = Field(default=300, ge=1, le=MAX_REQUEST_LIFESPAN_S)
    slots_per_runner: int = Field(default=1, ge=1, le=1000)
    min_runners: int = Field(default=0, ge=0, le=1000)
    max_runners: int = Field(default=10, ge=1, le=1000)
    runners_margin: int = Field(default=0, ge=0, le=1000)
    allow_private_network: bool = False
    error_policy: ErrorPolicy = Field(default_factory=ErrorPolicy)
    updated_at: datetime | None = None

    @property
    def pool(self) -> PoolKey:
        return PoolKey(namespace=self.namespace, runner_name=self.runner_name)

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url, re.IGNORECASE):
            raise ValueError("url must be an absolute http:// or https:// URL")
        return url

    @field_validator("headers")
    @classmethod
    def _no_reserved(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name in headers:
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"header name {name!r} is not a valid HTTP token")
            if is_reserved_header(name):
                raise ValueError(f"header {name!r} is reserved by runner-kit")
        return headers

    @model_validator(mode="after")
    def _bounds(self) -> RunnerConfig:
        if self.max_runners < self.min_runners:
            raise ValueError("max_runners must be >= min_runners")
        return self

    @field_serializer("headers", when_used="json")
    def _redact(self, headers: dict[str, SecretStr]) -> dict[str, str]:
        return {name: REDACTED for name in headers}

    def header_values(self) -> dict[str, str]:
        """The real header values, for the outbound request only. Never log the result."""
        return {name: value.get_secret_value() for name, value in self.headers.items()}


ActorStatus = Literal["active", "stopped"]


class ActorRecord(BaseModel):
    """An actor: durable ``state`` versioned by ``state_version``, plus what went wrong."""

    model_config = ConfigDict(frozen=True)

    actor_id: str = Field(pattern=NAME_PATTERN)
    namespace: str = Field(pattern=NAME_PATTERN)
    runner_name: str = Field(pattern=NAME_PATTERN)
    key: str | None = Field(default=None, max_length=1024)
    state: JsonValue = None
    state_version: int = 0
    status: ActorStatus = "active"
    failure_reason: FailureReasonField | None = None
    last_actor_error: ActorFailed | None = None
    error_policy: ErrorPolicy | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def pool(self) -> PoolKey:
        return PoolKey(namespace=self.namespace, runner_name=self.runner_name)


MessageStatus = Literal["pending", "running", "succeeded", "failed", "dead_lettered", "discarded"]
TERMINAL_STATUSES: Final = frozenset({"succeeded", "failed", "dead_lettered", "discarded"})


class MessageRecord(BaseModel):
    """One message in an actor's inbox and everything the sender may want to know about it.

    ``error`` is the typed error JSON of the last failed attempt (a ``RunnerPoolError``,
    ``runner_no_response`` or ``actor_failed``); ``disposition`` says what the policy did.
    """

    model_config = ConfigDict(frozen=True)

    actor_id: str = Field(pattern=NAME_PATTERN)
    message_id: str = Field(min_length=1, max_length=128)
    status: MessageStatus = "pending"
    input: JsonValue = None
    attempts: int = 0
    result: JsonValue = None
    error: dict[str, JsonValue] | None = None
    disposition: Literal["retry", "discard", "dead_letter", "stop"] | None = None
    runner_id: str | None = None
    reply_to: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None


class MessageEnvelope(BaseModel):
    """The SQS body for ``ActorMessagesQueue``: a pointer to the persisted message record."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1
    actor_id: str = Field(pattern=NAME_PATTERN)
    message_id: str = Field(min_length=1, max_length=128)
