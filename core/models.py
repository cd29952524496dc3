"""Domain records shared by every layer: pools, runner configs, actors, messages, error policy.

Pure pydantic; stores translate these to and from items, the API to and from JSON.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

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

from core.errors import ActorErrorField, ActorFailed, FailureReasonField, PoolErrorField

NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME_RE: Final = re.compile(NAME_PATTERN)

RESERVED_HEADER_PREFIX: Final = "x-runner-"
RESERVED_HEADERS: Final = frozenset(
    {"accept", "content-type", "content-length", "host", "transfer-encoding", "connection"}
    # Hop-by-hop and transport headers (RFC 9110 §7.6.1, §10.1.1): the HTTP client owns them.
    | {"keep-alive", "te", "trailer", "upgrade", "expect", "proxy-connection"}
)
"""Headers the kit or its HTTP client sets; a runner config may not set these, nor any
``x-runner-*`` or ``proxy-*`` header."""
RESERVED_HEADER_PREFIXES: Final = (RESERVED_HEADER_PREFIX, "proxy-")

HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An RFC 9110 token."""
_FIELD_VALUE_RE: Final = re.compile(r"(?:[\x21-\x7e](?:[\x20\x09\x21-\x7e]*[\x21-\x7e])?)?")
"""An RFC 9110 field value, ASCII only: visible characters, inner spaces and tabs; no
controls (CR, LF, NUL, ...) and no leading or trailing whitespace. Non-ASCII (obs-text) is
refused too: encodings differ between HTTP stacks."""

MAX_REQUEST_LIFESPAN_S: Final = 900
"""A Lambda runs at most 15 minutes, so a runner request cannot be held longer."""

REDACTED: Final = "***"

SECRET_ARN_PATTERN: Final = (
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}$"  # noqa: S105
)
"""A Secrets Manager secret ARN (a header value may reference one instead of holding it)."""


def is_reserved_header(name: str) -> bool:
    """True if the kit owns this header name (case-insensitive)."""
    lowered = name.strip().lower()
    return lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIXES)


HeaderProblem = Literal["invalid_name", "reserved", "invalid_value"]


def header_problem(name: str, value: str) -> HeaderProblem | None:
    """What is wrong with one configured header, or None. Never echo ``value``: a secret."""
    if not HEADER_NAME_RE.fullmatch(name):
        return "invalid_name"
    if is_reserved_header(name):
        return "reserved"
    if not _FIELD_VALUE_RE.fullmatch(value):
        return "invalid_value"
    return None


HEADER_PROBLEMS: Final[dict[str, str]] = {
    "invalid_name": "is not a valid HTTP header name (an RFC 9110 token)",
    "reserved": "is reserved: runner-kit or its HTTP client sets it (hop-by-hop, transport, "
    "x-runner-*, proxy-*)",
    "invalid_value": "has a value that is not an RFC 9110 field value (visible ASCII; no "
    "control characters such as CR, LF or NUL; no leading or trailing whitespace)",
}


_URL_RE: Final = re.compile(
    r"(?P<scheme>https?)://(?:(?P<userinfo>[^@/?#]*)@)?(?P<host>\[[^\]/?#]*\]|[^:/?#]*)"
    r"(?::(?P<port>[^/?#]*))?(?P<rest>[/?#].*)?",
    re.IGNORECASE | re.DOTALL,
)


def url_problem(url: str) -> str | None:
    """Why ``url`` can never be called (a phrase without the URL), or None.

    Absolute ``http``/``https``; no whitespace or control characters anywhere; a non-empty host
    that is an IP literal or a name IDNA can encode; a port, if given, within 1-65535.
    """
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return "must not contain whitespace or control characters"
    match = _URL_RE.fullmatch(url)
    if match is None:
        return "must be an absolute http:// or https:// URL"
    host, port = match["host"], match["port"]
    if not host or host == "[]":
        return "has an empty host"
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return "has an invalid port (1-65535)"
    if host.startswith("["):
        import ipaddress

        try:
            ipaddress.IPv6Address(host[1:-1].split("%", 1)[0])
        except ValueError:
            return "has an invalid IPv6 literal"
        return None
    if host.endswith("."):
        host = host[:-1]
    labels = host.split(".")
    try:
        encoded = host.encode("idna") if not host.isascii() else host.encode("ascii")
    except UnicodeError:
        return "has a host name IDNA cannot encode"
    if (
        not all(labels)
        or len(encoded) > 253
        or not re.fullmatch(rb"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*", encoded)
    ):
        return "has an invalid host name"
    return None


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

    # hide_input_in_errors: a validation error must never quote a header value or the URL.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    namespace: str = Field(pattern=NAME_PATTERN)
    runner_name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(min_length=1, max_length=2048)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    header_secrets: dict[str, Annotated[str, Field(pattern=SECRET_ARN_PATTERN)]] = Field(
        default_factory=dict,
        description="header name -> Secrets Manager ARN whose SecretString is the value; "
        "resolved at each start (cached), never stored",
    )
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
        problem = url_problem(url)
        if problem is not None:
            raise ValueError(f"url {problem}")  # never the URL itself: it may hold credentials
        return url

    @field_validator("headers", "header_secrets")
    @classmethod
    def _no_reserved(cls, headers: dict[str, Any]) -> dict[str, Any]:
        # Names only: a stored value that is no field value (saved before the API checked) must
        # still load, so its start fails with a typed error naming the header (adapters.runner).
        for name in headers:
            problem = header_problem(name, "")
            if problem is not None:
                raise ValueError(f"header {name!r} {HEADER_PROBLEMS[problem]}")
        return headers

    @model_validator(mode="after")
    def _bounds(self) -> RunnerConfig:
        if self.max_runners < self.min_runners:
            raise ValueError("max_runners must be >= min_runners")
        both = {n.lower() for n in self.headers} & {n.lower() for n in self.header_secrets}
        if both:
            raise ValueError(f"headers {sorted(both)} have both a value and a secret_arn")
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
    start_error: PoolErrorField | None = None
    """A pending message's latest start failed with this ``RunnerPoolError`` (until ``init``)."""
    stop_error: ActorErrorField | None = None
    """The error that stopped the actor (kept while ``stopped``, cleared by resume)."""
    error_policy: ErrorPolicy | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def pool(self) -> PoolKey:
        return PoolKey(namespace=self.namespace, runner_name=self.runner_name)


MessageStatus = Literal["pending", "running", "succeeded", "failed", "dead_lettered", "discarded"]
TERMINAL_STATUSES: Final = frozenset({"succeeded", "failed", "dead_lettered", "discarded"})
RETRYABLE_STATUSES: Final = frozenset({"dead_lettered", "discarded"})
"""Final statuses ``reopen`` (the retry route, an SQS redrive) runs again."""


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
