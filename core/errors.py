"""Every error the kit speaks, as data with a stable snake_case ``code``.

Codes are wire format: append-only, never renamed. JSON is ``{"code": ..., <fields>}``.

RunnerPoolError (a pool's serverless endpoint failed; what the tracker holds):
    serverless_http_error{status_code, body}       endpoint answered a status other than 200
    serverless_stream_ended_early                  stream ended before the ``init`` frame
    serverless_connection_error{message, reason}   transport failed; ``reason`` is a sub-code
    serverless_invalid_base64{raw_payload}         an event's data is not standard base64
    serverless_invalid_payload{message, raw_payload}  decoded data is not a valid v1 frame
    internal_error{message}                        the kit itself failed while starting a runner

ActorFailureReason (stored on the actor):
    no_capacity                                    waiting for a runner slot
    runner_no_response{runner_id}                  the runner started, then went silent or ended

ActorError (API-facing ``error`` of an actor; omitted when there is none):
    pool_error{error}                              no_capacity while the pool has an active error
    no_capacity
    runner_no_response{runner_id}
    actor_failed{error_code, message}              the actor's own code sent an ``error`` frame
                                                   (DESIGN.md says ``code``; that key is the tag)

Gateway codes (group ``guard``): actor_runner_failed, actor_ready_timeout.

Kit runtime codes (raised as ``core.exceptions.KitError``):
    durable_store_required:<facet>                 in-memory store wired inside Lambda
    missing_execution_id                           an execution without its persisted message_id
    execution_busy                                 another execution holds the actor
    execution_lease_lost                           this execution lost its lease; must not commit
    store_commit_failed                            the commit could not be written
    store_read_failed                              a store could not be read (AWS error code kept)

Decoding an unknown code never fails: it gives an ``Other*`` value that keeps the code and every
field in order and re-encodes to identical JSON. A known code with fields this build does not know
(a newer version wrote it) decodes too, keeps them in order and re-encodes identically. Malformed
input (not an object, no string ``code``, a known field of the wrong type) raises
``ErrorDecodeError``; stores isolate such a record as ``record_undecodable`` (see below).

Message-level codes (``core.execution``, a message record's ``error``):
    receive_limit_reached{receive_count, max_receive_count, reason, last_error}
    store_commit_failed{message, aws_code, retryable}
    (``actor_failed`` with ``error_code`` state_too_large / result_too_large: a ``done`` the
    kit cannot store; never retried)

Record codes (what a reader shows instead of a record it cannot decode, and message outcomes):
    record_undecodable{message, raw}               a stored error that does not decode at all
    actor_deleted{message}                         a pending message of a deleted actor (discarded)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Final, Literal, TypeAlias, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    model_validator,
)

from core.truncate import MAX_ERROR_BYTES, truncate_utf8

# --- Code registries (the golden test pins these) -------------------------------------------

POOL_ERROR_CODES: Final = (
    "serverless_http_error",
    "serverless_stream_ended_early",
    "serverless_connection_error",
    "serverless_invalid_base64",
    "serverless_invalid_payload",
    "internal_error",
)
CONNECTION_REASONS: Final = (
    "connect",
    "dns",
    "tls",
    "timeout",
    "read",
    "content_type",
    "blocked_address",
    "too_large",
    "redirect",
    "protocol",
    "invalid_url",
)
FAILURE_REASON_CODES: Final = ("no_capacity", "runner_no_response")
ACTOR_ERROR_CODES: Final = ("pool_error", "no_capacity", "runner_no_response", "actor_failed")
GATEWAY_CODES: Final = ("actor_runner_failed", "actor_ready_timeout")
RECORD_CODES: Final = ("record_undecodable", "actor_deleted")
STORE_FACETS: Final = (
    "pool_error_store",
    "actor_store",
    "runner_config_store",
    "idempotency_store",
)
RUNTIME_CODES: Final = (
    *(f"durable_store_required:{facet}" for facet in STORE_FACETS),
    "missing_execution_id",
    "execution_busy",
    "execution_lease_lost",
    "store_commit_failed",
    "store_read_failed",
)

ConnectionReason: TypeAlias = str
"""A sub-code of ``serverless_connection_error``; known values in ``CONNECTION_REASONS``."""


class ErrorDecodeError(ValueError):
    """Input that is not an error object: not JSON, no object, no string ``code``, bad fields."""


def _cut(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return truncate_utf8(value, MAX_ERROR_BYTES)
    return value


ErrorText = Annotated[str, BeforeValidator(_cut)]
"""Free text inside an error (bodies, payloads, messages): cut to 512 UTF-8 bytes on a
character boundary, so one record never outgrows its item."""


class _Coded(BaseModel):
    """Base of every known variant: frozen, JSON with ``code`` first.

    Fields a newer version added are kept (``extra="allow"``), with the order they came in, so
    a record read and written back by this build is unchanged (rolling upgrades).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    _wire_order: tuple[str, ...] = PrivateAttr(default=())
    summary_format: ClassVar[str] = ""
    """``summary`` as a ``str.format`` template over the fields (empty: the code)."""

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        value = handler(data)
        if isinstance(value, _Coded) and value.model_extra and isinstance(data, Mapping):
            value._wire_order = tuple(data)
        return value

    def to_json(self) -> dict[str, JsonValue]:
        """The wire form: ``{"code": ..., <fields>}`` (decoded extras in their original order)."""
        doc: dict[str, JsonValue] = self.model_dump(mode="json")
        if not self._wire_order:
            return doc
        ordered = {key: doc[key] for key in self._wire_order if key in doc}
        ordered.update(doc)
        return ordered

    @property
    def summary(self) -> str:
        """One human line, used in ``str(RunnerError)`` and logs."""
        if self.summary_format:
            return self.summary_format.format_map(dict(self))
        return str(self.to_json()["code"])


class _Other(BaseModel):
    """An error with a code this build does not know: kept whole, re-encoded unchanged."""

    model_config = ConfigDict(frozen=True)

    data: dict[str, JsonValue]

    @property
    def code(self) -> str:
        return str(self.data["code"])

    def to_json(self) -> dict[str, JsonValue]:
        return dict(self.data)

    @property
    def summary(self) -> str:
        message = self.data.get("message")
        return message if isinstance(message, str) else json.dumps(self.data, ensure_ascii=False)


# --- RunnerPoolError ---------------------------------------------------------------------------


class ServerlessHttpError(_Coded):
    """The endpoint answered a status other than 200."""

    code: Literal["serverless_http_error"] = "serverless_http_error"
    status_code: int
    body: ErrorText = ""

    @property
    def summary(self) -> str:
        return f"endpoint answered HTTP {self.status_code}" + (
            f": {self.body}" if self.body else ""
        )


class ServerlessStreamEndedEarly(_Coded):
    """The stream ended before the runner sent its ``init`` frame."""

    code: Literal["serverless_stream_ended_early"] = "serverless_stream_ended_early"
    summary_format = "stream ended before the init frame"


class ServerlessConnectionError(_Coded):
    """The transport failed (refused, DNS, TLS, reset, timeout, wrong content type, blocked...)."""

    code: Literal["serverless_connection_error"] = "serverless_connection_error"
    message: ErrorText
    reason: ConnectionReason
    summary_format = "{reason}: {message}"


class ServerlessInvalidBase64(_Coded):
    """An event's data is not standard base64."""

    code: Literal["serverless_invalid_base64"] = "serverless_invalid_base64"
    raw_payload: ErrorText

    @property
    def summary(self) -> str:
        return f"event data is not base64: {self.raw_payload[:80]!r}"


class ServerlessInvalidPayload(_Coded):
    """The decoded event is not a valid protocol v1 frame."""

    code: Literal["serverless_invalid_payload"] = "serverless_invalid_payload"
    message: ErrorText
    raw_payload: ErrorText
    summary_format = "{message}"


class InternalError(_Coded):
    """The kit failed while starting a runner (a bug or an unexpected exception)."""

    code: Literal["internal_error"] = "internal_error"
    message: ErrorText
    summary_format = "{message}"


class OtherPoolError(_Other):
    """A pool error with a code this build does not know."""


_KnownPoolError: TypeAlias = (
    ServerlessHttpError
    | ServerlessStreamEndedEarly
    | ServerlessConnectionError
    | ServerlessInvalidBase64
    | ServerlessInvalidPayload
    | InternalError
)
RunnerPoolError: TypeAlias = _KnownPoolError | OtherPoolError

# --- Actor failure reasons and API-facing actor errors ---------------------------------------


class NoCapacity(_Coded):
    """The actor is waiting for a runner slot in its pool."""

    code: Literal["no_capacity"] = "no_capacity"
    summary_format = "waiting for a runner slot"


class RunnerNoResponse(_Coded):
    """The runner started (sent ``init``), then went silent or ended without ``done``."""

    code: Literal["runner_no_response"] = "runner_no_response"
    runner_id: str
    summary_format = "runner {runner_id} stopped responding"


class OtherFailureReason(_Other):
    """A stored failure reason with a code this build does not know."""


_KnownFailureReason: TypeAlias = NoCapacity | RunnerNoResponse
ActorFailureReason: TypeAlias = _KnownFailureReason | OtherFailureReason

# Fields holding an error: any JSON object in the schema, decoded (unknown codes kept) on the
# way in, the wire form on the way out.
_AS_WIRE: Final = PlainSerializer(lambda err: err.to_json(), return_type=dict)
_ANY_ERROR_SCHEMA: Final = WithJsonSchema(
    {
        "type": "object",
        "required": ["code"],
        "properties": {"code": {"type": "string"}},
        "additionalProperties": True,
    }
)

PoolErrorField = Annotated[
    RunnerPoolError,
    PlainValidator(lambda v: v if isinstance(v, RunnerPoolError) else decode_pool_error(v)),
    _AS_WIRE,
    _ANY_ERROR_SCHEMA,
]
"""A pydantic field type for a ``RunnerPoolError`` (unknown codes kept as ``OtherPoolError``)."""


class PoolErrorView(_Coded):
    """API-facing: the actor waits for capacity while its pool has an active error."""

    code: Literal["pool_error"] = "pool_error"
    error: PoolErrorField
    first_seen: str | None = None
    last_seen: str | None = None
    count: int | None = None
    summary_format = "pool error: {error.summary}"


class ActorFailed(_Coded):
    """API-facing: the actor's own code failed (an ``error`` frame)."""

    code: Literal["actor_failed"] = "actor_failed"
    error_code: str
    message: ErrorText = ""
    summary_format = "{error_code}: {message}"


class OtherActorError(_Other):
    """An API-facing actor error with a code this build does not know."""


_KnownActorError: TypeAlias = PoolErrorView | NoCapacity | RunnerNoResponse | ActorFailed
ActorError: TypeAlias = _KnownActorError | OtherActorError

# --- Decoding ------------------------------------------------------------------------------

_M = TypeVar("_M", bound=_Other)

_POOL_ADAPTER: Final = TypeAdapter(Annotated[_KnownPoolError, Field(discriminator="code")])
_REASON_ADAPTER: Final = TypeAdapter(Annotated[_KnownFailureReason, Field(discriminator="code")])
_ACTOR_ADAPTER: Final = TypeAdapter(Annotated[_KnownActorError, Field(discriminator="code")])


def _as_object(raw: Mapping[str, Any] | str | bytes) -> dict[str, Any]:
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ErrorDecodeError(f"error JSON does not parse: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise ErrorDecodeError(f"an error must be a JSON object, got {type(raw).__name__}")
    data = dict(raw)
    if not isinstance(data.get("code"), str) or not data["code"]:
        raise ErrorDecodeError("an error object needs a non-empty string 'code'")
    return data


def _decode(
    raw: Mapping[str, Any] | str | bytes,
    known: tuple[str, ...],
    adapter: TypeAdapter[Any],
    other: type[_M],
) -> Any:
    data = _as_object(raw)
    if data["code"] not in known:
        try:
            return other(data=data)
        except ValidationError as exc:
            raise ErrorDecodeError(f"error fields are not JSON values: {exc}") from exc
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise ErrorDecodeError(f"malformed {data['code']}: {exc.errors()[0]['msg']}") from exc


def decode_pool_error(raw: Mapping[str, Any] | str | bytes) -> RunnerPoolError:
    """Decode a ``RunnerPoolError`` from its JSON (object, str or bytes)."""
    result: RunnerPoolError = _decode(raw, POOL_ERROR_CODES, _POOL_ADAPTER, OtherPoolError)
    return result


def decode_failure_reason(raw: Mapping[str, Any] | str | bytes) -> ActorFailureReason:
    """Decode a stored actor ``failure_reason``."""
    result: ActorFailureReason = _decode(
        raw, FAILURE_REASON_CODES, _REASON_ADAPTER, OtherFailureReason
    )
    return result


def decode_actor_error(raw: Mapping[str, Any] | str | bytes) -> ActorError:
    """Decode an API-facing actor ``error``."""
    result: ActorError = _decode(raw, ACTOR_ERROR_CODES, _ACTOR_ADAPTER, OtherActorError)
    return result


FailureReasonField = Annotated[
    ActorFailureReason,
    PlainValidator(lambda v: v if isinstance(v, _Coded | _Other) else decode_failure_reason(v)),
    _AS_WIRE,
    _ANY_ERROR_SCHEMA,
]
"""A pydantic field type holding an ``ActorFailureReason``."""

ActorErrorField = Annotated[
    ActorError,
    PlainValidator(lambda v: v if isinstance(v, _Coded | _Other) else decode_actor_error(v)),
    _AS_WIRE,
    _ANY_ERROR_SCHEMA,
]
"""A pydantic field type holding an API-facing ``ActorError``."""

ALL_CODES: Final = tuple(
    dict.fromkeys(
        (
            *POOL_ERROR_CODES,
            *FAILURE_REASON_CODES,
            *ACTOR_ERROR_CODES,
            *GATEWAY_CODES,
            *RUNTIME_CODES,
            *RECORD_CODES,
        )
    )
)
"""Every code the kit emits (API request codes live in ``core.api_errors`` when present)."""
