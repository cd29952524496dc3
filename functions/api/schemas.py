"""Request and response bodies of the API (they also make the OpenAPI document)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from core.actor_status import ActorFacts
from core.actor_status import actor_error as actor_error_rule
from core.errors import ActorError, PoolErrorField, PoolErrorView
from core.events import read_errors
from core.models import (
    MAX_REQUEST_LIFESPAN_S,
    NAME_PATTERN,
    REDACTED,
    SECRET_ARN_PATTERN,
    ActorRecord,
    ErrorPolicy,
    MessageRecord,
    PoolKey,
    RunnerConfig,
)
from core.times import format_time

if TYPE_CHECKING:
    from core.hysteresis import PoolErrorStatus

MAX_JSON_BYTES = 256 * 1024
"""Cap on a message's ``input`` and an actor's ``state`` as JSON: they live in DynamoDB items
(400 KB each), so a bigger value is bad input (422), not a store failure (500)."""

HeaderName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
HeaderValue = Annotated[str, StringConstraints(max_length=8192)]


def _json_size(value: JsonValue) -> JsonValue:
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{size} bytes of JSON; at most {MAX_JSON_BYTES}")
    return value


REPLY_TO_PATTERN = r"^(https?://[^\s/]+/[0-9]{12}/)?[A-Za-z0-9_-]{1,80}(\.fifo)?$"
"""An SQS queue name, or its URL (``https://sqs.<region>.amazonaws.com/<account>/<name>``)."""

MESSAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""Client-chosen message ids (``Idempotency-Key``): safe in URLs, SQS dedup ids and logs."""

ApiTime = Annotated[
    datetime,
    PlainSerializer(format_time, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""Every time the API sends: UTC, microseconds, ``Z`` (``2026-01-02T03:04:05.000006Z``)."""


def _none(value: Any) -> bool:
    return value is None


def _omitted_when_none(**kw: Any) -> Any:
    """A field left out of the JSON when it has no value (``default`` is ``None``)."""
    return Field(default=None, exclude_if=_none, **kw)


class ErrorPolicyIn(ErrorPolicy):
    """An ``ErrorPolicy`` as a request gives it: strict types (no ``"3"`` for 3)."""

    model_config = ConfigDict(strict=True)


class SecretRef(BaseModel):
    """A header value kept in AWS Secrets Manager: its ``SecretString`` is sent, never stored."""

    model_config = ConfigDict(extra="forbid", strict=True)

    secret_arn: str = Field(
        pattern=SECRET_ARN_PATTERN,
        max_length=2048,
        examples=["arn:aws:secretsmanager:eu-west-1:123456789012:secret:runner-kit/token-AbCdEf"],
    )


class RunnerConfigIn(BaseModel):
    """``PUT /runner-configs/{namespace}/{runner_name}``: the whole config (it replaces).

    A header value of ``***`` (what GET shows) keeps the stored value of that header, so a
    read-modify-write never overwrites a secret with its redaction. Types are strict:
    ``"yes"`` is not a boolean, ``3.0`` and ``"3"`` are not integers.
    """

    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)

    url: str = Field(min_length=1, max_length=2048, examples=["https://runner.example.com"])
    headers: dict[HeaderName, HeaderValue | SecretRef] = Field(
        default_factory=dict,
        max_length=50,
        description="a value, '***' (keep the stored one), or {secret_arn} (Secrets Manager)",
    )
    request_lifespan: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REQUEST_LIFESPAN_S,
        description="seconds; default: 300, or less if the actor host cannot hold that long",
    )
    slots_per_runner: int = Field(default=1, ge=1, le=1000)
    min_runners: int = Field(default=0, ge=0, le=1000)
    max_runners: int = Field(default=10, ge=1, le=1000)
    runners_margin: int = Field(default=0, ge=0, le=1000)
    allow_private_network: bool = False
    error_policy: ErrorPolicyIn = Field(default_factory=ErrorPolicyIn)


DEFAULT_REQUEST_LIFESPAN_S = 300


class RunnerConfigPoolError(BaseModel):
    """A pool's active error as a runner config (and the gateway's 503) shows it."""

    pool: str = Field(description="namespace/runner_name")
    error: PoolErrorField
    first_seen: ApiTime
    last_seen: ApiTime
    count: int
    consecutive_successes: int = Field(description="successes in a row since the last failure")
    stale: bool = Field(description="no failure seen for a while (the tracker's stale_after_s)")

    @field_validator("pool", mode="before")
    @classmethod
    def _pool_id(cls, pool: Any) -> Any:
        return pool.id if isinstance(pool, PoolKey) else pool

    @classmethod
    def of(cls, status: PoolErrorStatus) -> RunnerConfigPoolError:
        """The view of the tracker's status (the same fields; the pool as its id)."""
        return cls.model_validate(status, from_attributes=True)


class RunnerConfigView(BaseModel):
    """A runner config as the API shows it: header values redacted, the pool's active error."""

    namespace: str
    runner_name: str
    url: str
    headers: dict[str, str] = Field(description="header names; every value is '***'")
    header_secrets: dict[str, str] = Field(
        default_factory=dict, description="header name -> the Secrets Manager ARN it is read from"
    )
    request_lifespan: int
    slots_per_runner: int
    min_runners: int
    max_runners: int
    runners_margin: int
    allow_private_network: bool
    error_policy: ErrorPolicy
    updated_at: ApiTime | None = None
    pool_error: RunnerConfigPoolError | None = _omitted_when_none(
        description="the pool's active error; omitted when healthy"
    )

    @classmethod
    def of(cls, config: RunnerConfig, status: PoolErrorStatus | None) -> RunnerConfigView:
        """The view of ``config``, with its pool's active error (``status``) if any."""
        fields = config.model_dump(exclude={"headers"})
        return cls(
            **fields,
            headers={name: REDACTED for name in config.headers},
            pool_error=RunnerConfigPoolError.of(status) if status is not None else None,
        )


class RunnerConfigList(BaseModel):
    """``GET /runner-configs?namespace=``."""

    runner_configs: list[RunnerConfigView]


class ActorIn(BaseModel):
    """``POST /actors`` (strict types)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    actor_id: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="generated when omitted"
    )
    namespace: str = Field(pattern=NAME_PATTERN)
    runner_name: str = Field(pattern=NAME_PATTERN)
    key: str | None = Field(default=None, max_length=1024)
    state: JsonValue = None
    error_policy: ErrorPolicyIn | None = None

    _state_size = field_validator("state")(_json_size)


def actor_error(actor: ActorRecord, status: PoolErrorStatus | None) -> ActorError | None:
    """The actor's API ``error``: the one rule of ``core.actor_status`` over its stored facts,
    with the pool's active error (``status``) as the ``pool_error`` it may show."""
    pool_error = (
        PoolErrorView(
            error=status.error,
            first_seen=format_time(status.first_seen),
            last_seen=format_time(status.last_seen),
            count=status.count,
        )
        if status is not None
        else None
    )
    return actor_error_rule(ActorFacts.of(actor), pool_error)


class ActorView(BaseModel):
    """An actor; keys with no value (``error`` in particular) are omitted, except ``state``."""

    actor_id: str
    namespace: str
    runner_name: str
    key: str | None = _omitted_when_none()
    state: JsonValue = None
    state_version: int
    status: str
    error: dict[str, JsonValue] | None = _omitted_when_none(
        description=(
            "why the actor's work is not running now (docs/api.md): pool_error | no_capacity |"
            " runner_no_response | actor_failed; omitted when there is none"
        ),
    )
    error_policy: ErrorPolicy | None = _omitted_when_none()
    errors: dict[str, JsonValue] | None = _omitted_when_none(
        description="recent error events: {events: [...], dropped: n}"
    )
    created_at: ApiTime | None = _omitted_when_none()
    updated_at: ApiTime | None = _omitted_when_none()

    @classmethod
    def of(cls, actor: ActorRecord, status: PoolErrorStatus | None) -> ActorView:
        """The view of ``actor``, its ``error`` decided with its pool's active error."""
        error = actor_error(actor, status)
        events, dropped = read_errors(actor.extra)
        errors = {"events": [e.to_json() for e in events], "dropped": dropped}
        return cls.model_validate(
            {
                **dict(actor),  # the record's own fields; the rest (failure_reason, ...) ignored
                "error": error.to_json() if error is not None else None,
                "errors": errors if events or dropped else None,
            }
        )


class ActorList(BaseModel):
    """``GET /actors?namespace=``: one page."""

    actors: list[ActorView]
    next_cursor: str | None = None


class MessageIn(BaseModel):
    """``POST /actors/{actor_id}/messages`` (strict types)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    input: JsonValue = None
    reply_to: str | None = Field(
        default=None,
        max_length=1024,
        pattern=REPLY_TO_PATTERN,
        description="an SQS queue name or queue URL that hears the outcome",
    )

    _input_size = field_validator("input")(_json_size)


class MessageView(BaseModel):
    """A message and what became of it (every key is sent, ``null`` when unset)."""

    model_config = ConfigDict(from_attributes=True)

    actor_id: str
    message_id: str
    status: str
    input: JsonValue = None
    attempts: int = 0
    result: JsonValue = None
    error: dict[str, JsonValue] | None = None
    disposition: str | None = None
    runner_id: str | None = None
    reply_to: str | None = None
    created_at: ApiTime | None = None
    updated_at: ApiTime | None = None
    started_at: ApiTime | None = None
    finished_at: ApiTime | None = None
    next_attempt_at: ApiTime | None = None

    @classmethod
    def of(cls, message: MessageRecord) -> MessageView:
        """The view of ``message``."""
        return cls.model_validate(message)


class MessageList(BaseModel):
    """``GET /actors/{actor_id}/messages``: one page, newest first."""

    messages: list[MessageView]
    next_cursor: str | None = None
