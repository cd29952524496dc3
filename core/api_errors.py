"""What the API answers when a request cannot be served: ``{"group","code","message","metadata"}``.

Codes are wire format (append-only, documented in docs/errors.md under "API errors"):

request (the HTTP request itself):
    invalid_request            422  body, query or path does not match the schema
    malformed_body             400  body is not JSON (or not valid base64/UTF-8)
    unsupported_media_type     415  body is not application/json
    route_not_found            404  no such route or method
    json_too_deep              422  the body nests deeper than MAX_JSON_DEPTH (docs/api.md)
    non_finite_number          422  NaN, Infinity, or a number that overflows to infinity
    item_too_large             413  what would be stored exceeds one DynamoDB item (400 KB)
runner_config:
    runner_config_not_found    404  no config for this pool
    runner_config_invalid      422  reserved header, max_runners < min_runners, bad lifespan
    runner_config_url_blocked  422  the URL fails the outbound safety policy
    runner_config_header_invalid 422  a header's name is invalid or reserved, or its value is
                                    not an RFC 9110 field value (names the header, never the value)
    runner_config_conflict     409  a "***" PUT kept losing the race with other writers; retry
actor:
    actor_not_found            404
    actor_exists               409  an actor with this actor_id already exists
    actor_stopped              409  a stopped actor takes no messages
    actor_not_stopped          409  resume of an actor that is not stopped
    actor_record_undecodable   409  the stored actor cannot be read by this build (DELETE works)
    pool_not_configured        409  the actor's pool has no runner config
message:
    message_not_found          404
    idempotency_key_reused     409  the Idempotency-Key names a message with another input
    message_not_retryable      409  only a dead_lettered or discarded message can be retried
guard (the gateway, ``?wait=true``):
    actor_runner_failed        503  the actor's pool has an active error (``Retry-After`` set)
    actor_ready_timeout        503  no result within the ready timeout
server:
    server_error               500  a bug; never expected for any input
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class ApiErrorSpec(BaseModel):
    """A registered API error code: its group and HTTP status."""

    model_config = ConfigDict(frozen=True)

    group: str
    code: str
    status: int


def _spec(group: str, code: str, status: int) -> ApiErrorSpec:
    return ApiErrorSpec(group=group, code=code, status=status)


API_ERRORS: Final[dict[str, ApiErrorSpec]] = {
    s.code: s
    for s in (
        _spec("request", "invalid_request", 422),
        _spec("request", "malformed_body", 400),
        _spec("request", "unsupported_media_type", 415),
        _spec("request", "route_not_found", 404),
        _spec("request", "json_too_deep", 422),
        _spec("request", "non_finite_number", 422),
        _spec("request", "item_too_large", 413),
        _spec("runner_config", "runner_config_not_found", 404),
        _spec("runner_config", "runner_config_invalid", 422),
        _spec("runner_config", "runner_config_url_blocked", 422),
        _spec("runner_config", "runner_config_header_invalid", 422),
        _spec("runner_config", "runner_config_conflict", 409),
        _spec("actor", "actor_not_found", 404),
        _spec("actor", "actor_exists", 409),
        _spec("actor", "actor_stopped", 409),
        _spec("actor", "actor_not_stopped", 409),
        _spec("actor", "actor_record_undecodable", 409),
        _spec("actor", "pool_not_configured", 409),
        _spec("message", "message_not_found", 404),
        _spec("message", "idempotency_key_reused", 409),
        _spec("message", "message_not_retryable", 409),
        _spec("guard", "actor_runner_failed", 503),
        _spec("guard", "actor_ready_timeout", 503),
        _spec("server", "server_error", 500),
    )
}
API_ERROR_CODES: Final = tuple(API_ERRORS)


class ApiErrorBody(BaseModel):
    """The JSON body of every non-2xx answer."""

    model_config = ConfigDict(frozen=True)

    group: str
    code: str
    message: str
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class ApiError(Exception):
    """Raised by a route; the resolver turns it into the error answer."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        metadata: dict[str, JsonValue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        spec = API_ERRORS[code]  # an unregistered code is a bug: fail loudly in tests
        super().__init__(f"{code}: {message}")
        self.spec = spec
        self.body = ApiErrorBody(
            group=spec.group, code=code, message=message, metadata=dict(metadata or {})
        )
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        return self.spec.status

    @property
    def code(self) -> str:
        return self.body.code
