"""The API's routes (DESIGN.md §6) on a Powertools router; ``app.py`` wires them and the deps.

Every route reads its dependencies from ``router.context["deps"]`` (an ``ApiDeps``), which
``app.handle`` puts there for one request, so unit tests pass in-memory parts.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Protocol

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import JsonValue, ValidationError

from adapters.settings import Settings
from core.actor_status import ActorFacts
from core.api_errors import ApiError, ApiErrorBody
from core.gateway import GatewayPolicy, PoolFailed, Ready, wait_for_result
from core.models import (
    HEADER_PROBLEMS,
    NAME_PATTERN,
    REDACTED,
    TERMINAL_STATUSES,
    ActorRecord,
    MessageEnvelope,
    MessageRecord,
    MessageStatus,
    PoolKey,
    RunnerConfig,
    header_problem,
)
from functions.api import schemas
from functions.api.views import (
    PoolErrorStatusLike,
    actor_view,
    message_view,
    runner_config_view,
)

router = Router()  # type: ignore[no-untyped-call]

_pending = threading.local()
"""The gateway wait a ``send_message`` route left for ``app.handle`` to run after the resolver."""


def take_pending_wait() -> Callable[[float | None], Response[Any]] | None:
    """The wait the last route on this thread asked for (and forget it)."""
    wait: Callable[[float | None], Response[Any]] | None = getattr(_pending, "wait", None)
    _pending.wait = None
    return wait


JSON = "application/json"


# --- Ports: what the API needs from the stores, the queue and the tracker ---------------------


class RunnerConfigs(Protocol):
    def put(self, config: RunnerConfig) -> None: ...
    def put_if(self, config: RunnerConfig, revision: str | None) -> bool: ...
    def get_with_revision(self, pool: PoolKey) -> tuple[RunnerConfig, str] | None: ...
    def get(self, pool: PoolKey) -> RunnerConfig | None: ...
    def delete(self, pool: PoolKey) -> bool: ...
    def list(self, namespace: str) -> list[RunnerConfig]: ...


class Actors(Protocol):
    def create(self, actor: ActorRecord) -> ActorRecord: ...
    def get(self, actor_id: str) -> ActorRecord | None: ...
    def list(
        self, namespace: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[ActorRecord], str | None]: ...
    def resume(self, actor_id: str) -> bool: ...
    def delete(self, actor_id: str) -> bool: ...


class Messages(Protocol):
    def create(self, message: MessageRecord) -> MessageRecord: ...
    def get(self, actor_id: str, message_id: str) -> MessageRecord | None: ...
    def list_for_actor(
        self,
        actor_id: str,
        *,
        status: MessageStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[list[MessageRecord], str | None]: ...
    def discard(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> bool: ...
    def reopen(self, actor_id: str, message_id: str, *, now: datetime) -> tuple[str, Any]: ...


class Queue(Protocol):
    def send(self, envelope: MessageEnvelope, *, dedup_id: str | None = None) -> Any: ...


class Tracker(Protocol):
    def active_error(self, pool: PoolKey) -> Any: ...
    def active_errors(self, pools: Iterable[PoolKey]) -> dict[PoolKey, Any]: ...
    def retire(self, pool: PoolKey) -> None: ...


class ProbeResetter(Protocol):
    def reset(self, pool: PoolKey) -> None: ...


UrlCheck = Callable[[str, bool], str | None]
"""``(url, allow_private_network) -> refusal reason | None`` (the outbound safety policy)."""


@dataclass
class ApiDeps:
    """Everything a request may touch; built once per warm Lambda by ``app.deps()``."""

    settings: Settings
    runner_configs: RunnerConfigs
    actors: Actors
    messages: Messages
    queue: Queue
    tracker: Tracker
    probes: ProbeResetter
    check_url: UrlCheck
    actor_exists_error: type[Exception]
    now: Callable[[], datetime]
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    new_id: Callable[[], str]


def _deps() -> ApiDeps:
    deps = router.context.get("deps")
    if not isinstance(deps, ApiDeps):  # pragma: no cover - a wiring bug, not an input
        raise RuntimeError("ApiDeps missing from the resolver context")
    return deps


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status_code=status, content_type=JSON, body=body, headers=headers)


def _errors(*codes: int) -> dict[int, OpenAPIResponse]:
    """OpenAPI entries for error answers (all share ``ApiErrorBody``)."""
    answers: dict[int, OpenAPIResponse] = {}
    for code in codes:
        answer: OpenAPIResponse = {
            "description": "error",
            "content": {JSON: {"model": ApiErrorBody}},
        }
        if code == 503:
            answer["description"] = "the gateway: actor_runner_failed or actor_ready_timeout"
            answer["headers"] = {
                "Retry-After": {"description": "seconds", "schema": {"type": "integer"}}
            }
        answers[code] = answer
    return answers


def _ok(model: type[Any], description: str = "OK") -> OpenAPIResponse:
    return {"description": description, "content": {JSON: {"model": model}}}


Namespace = Annotated[str, Path(pattern=NAME_PATTERN)]
RunnerName = Annotated[str, Path(pattern=NAME_PATTERN)]
ActorId = Annotated[str, Path(pattern=NAME_PATTERN)]
MessageId = Annotated[str, Path(pattern=schemas.MESSAGE_ID_PATTERN)]


# --- Runner configs ---------------------------------------------------------------------------


@router.put(
    "/runner-configs/<namespace>/<runner_name>",
    operation_id="put_runner_config",
    summary="Create or replace a runner config",
    tags=["runner-configs"],
    responses={200: _ok(schemas.RunnerConfigView), **_errors(400, 409, 413, 415, 422)},
)
def put_runner_config(
    namespace: Namespace, runner_name: RunnerName, body: schemas.RunnerConfigIn
) -> Response[Any]:
    deps = _deps()
    pool = PoolKey(namespace=namespace, runner_name=runner_name)
    _check_headers(body.headers)
    lifespan_cap = deps.settings.max_request_lifespan_s
    lifespan = body.request_lifespan or min(schemas.DEFAULT_REQUEST_LIFESPAN_S, lifespan_cap)
    # A first pass validates everything but the kept values (the stored config is read below).
    headers = _split_headers(body.headers, None, keep_missing=True)
    config = _runner_config(deps, pool, body, headers, lifespan)
    if config.request_lifespan > lifespan_cap:
        raise ApiError(
            "runner_config_invalid",
            f"request_lifespan {config.request_lifespan} s is more than the actor host can hold "
            f"({lifespan_cap} s: its timeout minus the deadline margin)",
            metadata={"max_request_lifespan": lifespan_cap},
        )
    refusal = deps.check_url(config.url, config.allow_private_network)
    if refusal is not None:
        raise ApiError(
            "runner_config_url_blocked",
            refusal,
            metadata={"allow_private_network": config.allow_private_network},
        )
    # One read serves both the retire decision and the first "***" merge.
    found = deps.runner_configs.get_with_revision(pool)
    if found is None:
        # A new (or re-created) pool starts healthy, whatever a deleted one left behind.
        deps.tracker.retire(pool)
    if any(value == REDACTED for value in body.headers.values()):
        config = _put_keeping_stored_values(deps, pool, body, lifespan, found)
    else:
        _put(deps, config)
    # A saved config is a user's fix: probe the pool on the next tick, not after the backoff.
    deps.probes.reset(pool)
    return _json(200, runner_config_view(config, deps.tracker.active_error(pool)))


KEEP_RETRIES = 5
"""How often a ``"***"`` PUT re-reads and retries after another writer won the race."""

_Headers = tuple[dict[str, str], dict[str, str]]
"""``(values, secret ARNs)`` by header name."""


def _split_headers(
    headers: dict[str, str | schemas.SecretRef],
    existing: RunnerConfig | None,
    *,
    keep_missing: bool = False,
) -> _Headers:
    """Plain values and Secrets Manager references; ``***`` takes what ``existing`` has (422
    if it has none, unless ``keep_missing``)."""
    kept = existing.header_values() if existing is not None else {}
    kept_refs = existing.header_secrets if existing is not None else {}
    values: dict[str, str] = {}
    refs: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(value, schemas.SecretRef):
            refs[name] = value.secret_arn
        elif value == REDACTED and name in kept_refs:
            refs[name] = kept_refs[name]
        elif value == REDACTED and name in kept:
            values[name] = kept[name]
        elif value == REDACTED and not keep_missing:
            # A copied GET answer for a new pool or header: sending "***" would never work.
            raise ApiError(
                "runner_config_header_invalid",
                f"header {name!r} is {REDACTED!r} but the pool has no stored value to keep",
                metadata={"header": name, "problem": "nothing_to_keep"},
            )
        else:
            values[name] = value
    return values, refs


def _put_keeping_stored_values(
    deps: ApiDeps,
    pool: PoolKey,
    body: schemas.RunnerConfigIn,
    lifespan: int,
    found: tuple[RunnerConfig, str] | None,
) -> RunnerConfig:
    """Merge the kept values of ``found`` (the caller's read), write only if nobody wrote since
    the read (no reverts); after a lost race, read again."""
    for attempt in range(KEEP_RETRIES):
        if attempt:
            found = deps.runner_configs.get_with_revision(pool)
        existing, revision = found if found is not None else (None, None)
        headers = _split_headers(body.headers, existing)
        config = _runner_config(deps, pool, body, headers, lifespan)
        if _put(deps, config, revision=revision, conditional=True):
            return config
    raise ApiError(
        "runner_config_conflict",
        f"the runner config of {pool.id} kept changing while it was saved; read it and retry",
        metadata={"pool": pool.id, "attempts": KEEP_RETRIES},
    )


def _runner_config(
    deps: ApiDeps,
    pool: PoolKey,
    body: schemas.RunnerConfigIn,
    headers: _Headers,
    lifespan: int,
) -> RunnerConfig:
    values, refs = headers
    try:
        return RunnerConfig(
            namespace=pool.namespace,
            runner_name=pool.runner_name,
            **body.model_dump(exclude={"headers", "request_lifespan"}),
            request_lifespan=lifespan,
            headers=values,  # pydantic turns each str into a SecretStr
            header_secrets=refs,
            updated_at=deps.now(),
        )
    except ValidationError as exc:
        raise ApiError(
            "runner_config_invalid",
            "; ".join(str(e["msg"]) for e in exc.errors()),
            metadata={"errors": [_error_entry(e) for e in exc.errors()]},
        ) from None


MAX_HEADER_BYTES = 32 * 1024
"""All configured headers together (names and values): servers refuse larger header sections
(8-64 KB is common), and it keeps the stored config far below DynamoDB's 400 KB item."""


def _check_headers(headers: dict[str, str | schemas.SecretRef]) -> None:
    """Refuse a bad header by name, never echoing its value (it is a secret)."""
    for name, value in headers.items():
        problem = header_problem(name, value if isinstance(value, str) else "")
        if problem is not None:
            raise ApiError(
                "runner_config_header_invalid",
                f"header {name!r} {HEADER_PROBLEMS[problem]}",
                metadata={"header": name, "problem": problem},
            )
    total = sum(
        len(n.encode()) + len(v.encode() if isinstance(v, str) else v.secret_arn.encode())
        for n, v in headers.items()
    )
    if total > MAX_HEADER_BYTES:
        raise ApiError(
            "runner_config_header_invalid",
            f"the headers take {total} bytes together; at most {MAX_HEADER_BYTES}",
            metadata={"problem": "too_large", "size": total, "limit": MAX_HEADER_BYTES},
        )


def _put(
    deps: ApiDeps, config: RunnerConfig, *, revision: str | None = None, conditional: bool = False
) -> bool:
    """Write ``config`` (if ``conditional``: only over ``revision``); 413 if it cannot fit."""
    from adapters.dynamodb.runner_configs import ItemTooLargeError

    try:
        if conditional:
            return deps.runner_configs.put_if(config, revision)
        deps.runner_configs.put(config)
        return True
    except ItemTooLargeError as exc:
        raise ApiError(
            "item_too_large",
            f"the runner config would take {exc.size} bytes in DynamoDB; at most {exc.limit}",
            metadata={"size": exc.size, "limit": exc.limit},
        ) from None


@router.get(
    "/runner-configs/<namespace>/<runner_name>",
    operation_id="get_runner_config",
    summary="Get a runner config with its pool's active error",
    tags=["runner-configs"],
    responses={200: _ok(schemas.RunnerConfigView), **_errors(404, 422)},
)
def get_runner_config(namespace: Namespace, runner_name: RunnerName) -> Response[Any]:
    deps = _deps()
    pool = PoolKey(namespace=namespace, runner_name=runner_name)
    config = deps.runner_configs.get(pool)
    if config is None:
        raise ApiError(
            "runner_config_not_found", f"no runner config for {pool.id}", metadata={"pool": pool.id}
        )
    return _json(200, runner_config_view(config, deps.tracker.active_error(pool)))


@router.delete(
    "/runner-configs/<namespace>/<runner_name>",
    operation_id="delete_runner_config",
    summary="Delete a runner config (its pool's tracker error and probe schedule go too)",
    tags=["runner-configs"],
    responses={204: {"description": "deleted"}, **_errors(404, 422)},
)
def delete_runner_config(namespace: Namespace, runner_name: RunnerName) -> Response[Any]:
    deps = _deps()
    pool = PoolKey(namespace=namespace, runner_name=runner_name)
    if not deps.runner_configs.delete(pool):
        raise ApiError(
            "runner_config_not_found", f"no runner config for {pool.id}", metadata={"pool": pool.id}
        )
    # Retire what the pool's past left: its tracker error and its probe schedule.
    deps.tracker.retire(pool)
    deps.probes.reset(pool)
    return Response(status_code=204, content_type=None, body="")


@router.get(
    "/runner-configs",
    operation_id="list_runner_configs",
    summary="List a namespace's runner configs, each with its pool's active error",
    tags=["runner-configs"],
    responses={200: _ok(schemas.RunnerConfigList), **_errors(422)},
)
def list_runner_configs(
    namespace: Annotated[str, Query(pattern=NAME_PATTERN)],
) -> Response[Any]:
    deps = _deps()
    configs = deps.runner_configs.list(namespace)
    statuses = deps.tracker.active_errors([c.pool for c in configs]) if configs else {}
    views = [runner_config_view(c, statuses.get(c.pool)) for c in configs]
    return _json(200, {"runner_configs": views})


# --- Actors -----------------------------------------------------------------------------------


@router.post(
    "/actors",
    operation_id="create_actor",
    summary="Create an actor",
    tags=["actors"],
    responses={201: _ok(schemas.ActorView, "created"), **_errors(400, 409, 415, 422)},
)
def create_actor(body: schemas.ActorIn) -> Response[Any]:
    deps = _deps()
    pool = PoolKey(namespace=body.namespace, runner_name=body.runner_name)
    if deps.runner_configs.get(pool) is None:
        raise ApiError(
            "pool_not_configured",
            f"no runner config for {pool.id}; PUT /runner-configs/{pool.id} first",
            metadata={"pool": pool.id},
        )
    now = deps.now()
    record = ActorRecord(
        actor_id=body.actor_id or deps.new_id(),
        namespace=body.namespace,
        runner_name=body.runner_name,
        key=body.key,
        state=body.state,
        error_policy=body.error_policy,
        created_at=now,
        updated_at=now,
    )
    try:
        created = deps.actors.create(record)
    except deps.actor_exists_error:
        raise ApiError(
            "actor_exists",
            f"actor {record.actor_id} already exists",
            metadata={"actor_id": record.actor_id},
        ) from None
    return _json(201, actor_view(created, None), {"Location": f"/actors/{created.actor_id}"})


@router.get(
    "/actors/<actor_id>",
    operation_id="get_actor",
    summary="Get an actor with its error (pool_error while its pool is broken)",
    tags=["actors"],
    responses={200: _ok(schemas.ActorView), **_errors(404, 422)},
)
def get_actor(actor_id: ActorId) -> Response[Any]:
    deps = _deps()
    actor = _actor_or_404(deps, actor_id)
    statuses = deps.tracker.active_errors([actor.pool]) if _needs_pool(actor) else {}
    return _json(200, actor_view(actor, statuses.get(actor.pool)))


@router.get(
    "/actors",
    operation_id="list_actors",
    summary="List a namespace's actors (one page)",
    tags=["actors"],
    responses={200: _ok(schemas.ActorList), **_errors(422)},
)
def list_actors(
    namespace: Annotated[str, Query(pattern=NAME_PATTERN)],
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=2048)] = None,
) -> Response[Any]:
    deps = _deps()
    if cursor is not None and not _valid_cursor(cursor):
        raise ApiError("invalid_request", "bad cursor", metadata={"param": "cursor"})
    # The cursor was checked above; a record that does not decode is the store's to isolate,
    # never a "bad cursor".
    actors, next_cursor = deps.actors.list(namespace, limit=limit, cursor=cursor)
    pools = {a.pool for a in actors if _needs_pool(a)}
    statuses = deps.tracker.active_errors(sorted(pools, key=str)) if pools else {}
    views = [actor_view(a, statuses.get(a.pool)) for a in actors]
    return _json(200, {"actors": views, "next_cursor": next_cursor})


# --- Messages and the gateway -----------------------------------------------------------------


@router.post(
    "/actors/<actor_id>/messages",
    operation_id="send_message",
    summary="Send a message; with wait=true, wait for its result (the fail-fast gateway)",
    tags=["messages"],
    responses={
        200: _ok(schemas.MessageView, "wait=true: the message finished (see status)"),
        202: _ok(schemas.MessageView, "accepted; poll GET .../messages/{message_id}"),
        **_errors(400, 404, 409, 415, 422, 503),
    },
)
def send_message(
    actor_id: ActorId,
    body: schemas.MessageIn,
    wait: Annotated[bool, Query()] = False,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", pattern=schemas.MESSAGE_ID_PATTERN),
    ] = None,
) -> Response[Any]:
    deps = _deps()
    started = deps.clock()
    actor = _actor_or_404(deps, actor_id)
    if actor.status == "stopped":
        raise ApiError(
            "actor_stopped", f"actor {actor_id} is stopped", metadata={"actor_id": actor_id}
        )
    if deps.runner_configs.get(actor.pool) is None:
        raise ApiError(
            "pool_not_configured",
            f"no runner config for {actor.pool.id}; PUT /runner-configs/{actor.pool.id} first",
            metadata={"actor_id": actor_id, "pool": actor.pool.id},
        )
    message = _enqueue(deps, actor, body, idempotency_key)
    location = {"Location": f"/actors/{actor_id}/messages/{message.message_id}"}
    if not wait or message.status in TERMINAL_STATUSES:
        status = 200 if message.status in TERMINAL_STATUSES else 202
        return _json(status, message_view(message), location)
    # The wait runs after the resolver returns (``app.handle``): Powertools' resolver is not
    # re-entrant, so requests are resolved one at a time while their waits overlap.
    _pending.wait = partial(_gateway, deps, actor, message, started, location)
    return _json(202, message_view(message), location)


def _enqueue(
    deps: ApiDeps, actor: ActorRecord, body: schemas.MessageIn, idempotency_key: str | None
) -> MessageRecord:
    """Persist the pending message (idempotent on its id), then queue the pointer to it."""
    now = deps.now()
    wanted = MessageRecord(
        actor_id=actor.actor_id,
        message_id=idempotency_key or deps.new_id(),
        status="pending",
        input=body.input,
        reply_to=body.reply_to,
        created_at=now,
        updated_at=now,
    )
    stored = deps.messages.create(wanted)
    if stored.input != wanted.input or stored.reply_to != wanted.reply_to:
        raise ApiError(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a message with another input",
            metadata={"actor_id": actor.actor_id, "message_id": stored.message_id},
        )
    if stored.status == "pending":
        # A retried request re-sends: the FIFO queue drops the duplicate (deduplication id =
        # message_id) and the actor host never commits a message twice.
        deps.queue.send(MessageEnvelope(actor_id=actor.actor_id, message_id=stored.message_id))
    return stored


def _gateway(
    deps: ApiDeps,
    actor: ActorRecord,
    message: MessageRecord,
    started: float,
    headers: dict[str, str],
    remaining: float | None,
) -> Response[Any]:
    """Wait for the message's result, failing fast on a pool error (``core.gateway``)."""
    settings = deps.settings
    # The schedule counts from the request's arrival (the enqueue took some of the first
    # second); the wait also stays inside the Lambda's own deadline.
    spent = deps.clock() - started
    policy = GatewayPolicy(
        first_check_s=max(settings.gateway_first_check_s - spent, 0.0),
        check_interval_s=settings.gateway_check_interval_s,
        ready_timeout_s=settings.gateway_ready_timeout_s,
        poll_interval_s=settings.gateway_poll_interval_s,
    )
    max_wait = policy.ready_timeout_s - spent
    if remaining is not None:
        max_wait = min(max_wait, remaining - settings.gateway_deadline_margin_s)

    def check_result() -> MessageRecord | None:
        current = deps.messages.get(message.actor_id, message.message_id)
        return current if current is not None and current.status in TERMINAL_STATUSES else None

    def check_pool() -> PoolErrorStatusLike | None:
        status: PoolErrorStatusLike | None = deps.tracker.active_error(actor.pool)
        return status

    def check_started() -> bool:
        """The message's runner sent ``init`` (now or in an earlier attempt)."""
        current = deps.messages.get(message.actor_id, message.message_id)
        return current is not None and (current.status == "running" or bool(current.runner_id))

    outcome = wait_for_result(
        check_result=check_result,
        check_pool=check_pool,
        policy=policy,
        clock=deps.clock,
        sleep=deps.sleep,
        max_wait_s=max_wait,
        check_started=check_started,
    )
    waited = round(deps.clock() - started, 3)
    if isinstance(outcome, Ready):
        return _json(200, message_view(outcome.result), headers)
    if isinstance(outcome, PoolFailed):
        pool_error: dict[str, JsonValue] = outcome.pool_error.to_json()
        raise ApiError(
            "actor_runner_failed",
            f"the runner pool {actor.pool.id} is failing: {outcome.pool_error.error.summary}",
            metadata={
                "actor_id": actor.actor_id,
                "message_id": message.message_id,
                "pool_error": pool_error,
            },
            headers={"Retry-After": str(settings.gateway_retry_after_s), **headers},
        )
    raise ApiError(
        "actor_ready_timeout",
        f"no result for message {message.message_id} within {waited:g} s; it stays queued",
        metadata={
            "actor_id": actor.actor_id,
            "message_id": message.message_id,
            "waited_s": waited,
        },
        headers={
            "Retry-After": str(max(1, math.ceil(settings.gateway_check_interval_s))),
            **headers,
        },
    )


@router.get(
    "/actors/<actor_id>/messages/<message_id>",
    operation_id="get_message",
    summary="Get a message and its result",
    tags=["messages"],
    responses={200: _ok(schemas.MessageView), **_errors(404, 422)},
)
def get_message(actor_id: ActorId, message_id: MessageId) -> Response[Any]:
    deps = _deps()
    message = deps.messages.get(actor_id, message_id)
    if message is None:
        raise ApiError(
            "message_not_found",
            f"no message {message_id} for actor {actor_id}",
            metadata={"actor_id": actor_id, "message_id": message_id},
        )
    return _json(200, message_view(message))


# --- Actor lifecycle --------------------------------------------------------------------------


@router.post(
    "/actors/<actor_id>/resume",
    operation_id="resume_actor",
    summary="Resume a stopped actor: its held messages run again, in order",
    tags=["actors"],
    responses={200: _ok(schemas.ActorView), **_errors(404, 409, 422)},
)
def resume_actor(actor_id: ActorId) -> Response[Any]:
    deps = _deps()
    actor = _actor_or_404(deps, actor_id)
    if not deps.actors.resume(actor_id):
        current = _actor_or_404(deps, actor_id)
        raise ApiError(
            "actor_not_stopped",
            f"actor {actor_id} is {current.status}, not stopped",
            metadata={"actor_id": actor_id, "status": current.status},
        )
    # Messages that arrived while it was stopped were held (pending, not queued): queue them
    # again, oldest first (one FIFO group per actor keeps the order). A fresh deduplication id,
    # since SQS would drop a re-send of the same id within its 5-minute window.
    resumed = deps.new_id()
    for held in _all_messages(deps, actor_id, "pending"):
        deps.queue.send(
            MessageEnvelope(actor_id=actor_id, message_id=held.message_id),
            dedup_id=f"{held.message_id}:resume:{resumed}"[:128],
        )
    fresh = deps.actors.get(actor_id) or actor
    statuses = deps.tracker.active_errors([fresh.pool]) if _needs_pool(fresh) else {}
    return _json(200, actor_view(fresh, statuses.get(fresh.pool)))


@router.delete(
    "/actors/<actor_id>",
    operation_id="delete_actor",
    summary="Delete an actor; its pending messages end as discarded (actor_deleted)",
    tags=["actors"],
    responses={204: {"description": "deleted"}, **_errors(404, 422)},
)
def delete_actor(actor_id: ActorId) -> Response[Any]:
    deps = _deps()
    if not deps.actors.delete(actor_id):
        raise ApiError("actor_not_found", f"no actor {actor_id}", metadata={"actor_id": actor_id})
    # The actor goes first: a delivery that arrives from now on finds no actor and is dropped
    # by the host (discarded), so nothing queued can run. Then every pending message ends.
    error: dict[str, JsonValue] = {
        "code": "actor_deleted",
        "message": f"actor {actor_id} was deleted; the message will not run",
    }
    for pending in _all_messages(deps, actor_id, "pending"):
        deps.messages.discard(actor_id, pending.message_id, error=error, now=deps.now())
    return Response(status_code=204, content_type=None, body="")


@router.get(
    "/actors/<actor_id>/messages",
    operation_id="list_messages",
    summary="List an actor's messages, newest first (one page)",
    tags=["messages"],
    responses={200: _ok(schemas.MessageList), **_errors(404, 422)},
)
def list_messages(
    actor_id: ActorId,
    status: Annotated[MessageStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=2048)] = None,
) -> Response[Any]:
    deps = _deps()
    _actor_or_404(deps, actor_id)
    if cursor is not None and not _valid_message_cursor(cursor):
        raise ApiError("invalid_request", "bad cursor", metadata={"param": "cursor"})
    messages, next_cursor = deps.messages.list_for_actor(
        actor_id, status=status, limit=limit, cursor=cursor
    )
    return _json(200, {"messages": [message_view(m) for m in messages], "next_cursor": next_cursor})


def _all_messages(deps: ApiDeps, actor_id: str, status: MessageStatus) -> list[MessageRecord]:
    """Every message of the actor with ``status``, oldest first (page by page)."""
    out: list[MessageRecord] = []
    cursor: str | None = None
    while True:
        page, cursor = deps.messages.list_for_actor(
            actor_id, status=status, limit=100, cursor=cursor, oldest_first=True
        )
        out.extend(page)
        if cursor is None:
            return out


@router.post(
    "/actors/<actor_id>/messages/<message_id>/retry",
    operation_id="retry_message",
    summary="Run a dead-lettered or discarded message again, with a fresh attempt budget",
    tags=["messages"],
    responses={202: _ok(schemas.MessageView, "queued again"), **_errors(404, 409, 422)},
)
def retry_message(actor_id: ActorId, message_id: MessageId) -> Response[Any]:
    deps = _deps()
    outcome, stored = deps.messages.reopen(actor_id, message_id, now=deps.now())
    if outcome == "missing" or stored is None:
        raise ApiError(
            "message_not_found",
            f"no message {message_id} for actor {actor_id}",
            metadata={"actor_id": actor_id, "message_id": message_id},
        )
    if outcome != "reopened":
        raise ApiError(
            "message_not_retryable",
            f"message {message_id} is {stored.record.status}; only a dead_lettered or "
            "discarded message can be retried",
            metadata={
                "actor_id": actor_id,
                "message_id": message_id,
                "status": stored.record.status,
            },
        )
    # A new send of the same message: its own dedup id, or FIFO would drop it as a repeat.
    deps.queue.send(
        MessageEnvelope(actor_id=actor_id, message_id=message_id),
        dedup_id=f"{message_id}.r{stored.retries}",
    )
    location = {"Location": f"/actors/{actor_id}/messages/{message_id}"}
    return _json(202, message_view(stored.record), location)


# --- Helpers ----------------------------------------------------------------------------------


def _actor_or_404(deps: ApiDeps, actor_id: str) -> ActorRecord:
    try:
        actor = deps.actors.get(actor_id)
    except (ValueError, KeyError, TypeError) as exc:  # ErrorDecodeError and pydantic's too
        raise ApiError(
            "actor_record_undecodable",
            f"the stored actor {actor_id} cannot be read by this version ({type(exc).__name__})",
            metadata={"actor_id": actor_id},
        ) from None
    if actor is None:
        raise ApiError("actor_not_found", f"no actor {actor_id}", metadata={"actor_id": actor_id})
    return actor


def _needs_pool(actor: ActorRecord) -> bool:
    """Only an actor whose error may be the pool's costs a tracker lookup (one batched call
    per page)."""
    return ActorFacts.of(actor).needs_pool_status


def _valid_cursor(cursor: str) -> bool:
    """A cursor must decode to an actor id (what the store put in it), never e.g. ``""``."""
    from adapters.actor_store import decode_cursor

    try:
        return re.fullmatch(NAME_PATTERN, decode_cursor(cursor)) is not None
    except ValueError:
        return False


def _valid_message_cursor(cursor: str) -> bool:
    from adapters.message_store import decode_message_cursor

    try:
        _, message_id = decode_message_cursor(cursor)
    except ValueError:
        return False
    return re.fullmatch(schemas.MESSAGE_ID_PATTERN, message_id) is not None


def _error_entry(error: Any) -> dict[str, JsonValue]:
    return {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
