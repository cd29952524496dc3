"""Message routes: send (``wait=true`` is the fail-fast gateway), get, list, retry."""

from __future__ import annotations

import math
from functools import partial
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Header, Query

from core.api_errors import ApiError
from core.gateway import GatewayPolicy, PoolFailed, Ready, wait_for_result
from core.models import (
    TERMINAL_STATUSES,
    ActorRecord,
    MessageEnvelope,
    MessageRecord,
    MessageStatus,
)
from functions.api import schemas
from functions.api.deps import ApiDeps
from functions.api.routing import (
    Cursor,
    Limit,
    MessageId,
    Name,
    actor_or_404,
    answer,
    check_cursor,
    errors,
    leave_wait,
    ok,
    pool_not_configured,
    request_deps,
)

router = Router()  # type: ignore[no-untyped-call]


@router.post(
    "/actors/<actor_id>/messages",
    operation_id="send_message",
    summary="Send a message; with wait=true, wait for its result (the fail-fast gateway)",
    tags=["messages"],
    responses={
        200: ok(schemas.MessageView, "wait=true: the message finished (see status)"),
        202: ok(schemas.MessageView, "accepted; poll GET .../messages/{message_id}"),
        **errors(400, 404, 409, 415, 422, 503),
    },
)
def send_message(
    actor_id: Name,
    body: schemas.MessageIn,
    wait: Annotated[bool, Query()] = False,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", pattern=schemas.MESSAGE_ID_PATTERN),
    ] = None,
) -> Response[Any]:
    deps = request_deps(router)
    started = deps.clock.monotonic()
    actor = actor_or_404(deps, actor_id)
    if actor.status == "stopped":
        raise ApiError(
            "actor_stopped", f"actor {actor_id} is stopped", metadata={"actor_id": actor_id}
        )
    pool_not_configured(deps, actor.pool, actor_id=actor_id)
    message = _enqueue(deps, actor, body, idempotency_key)
    location = {"Location": f"/actors/{actor_id}/messages/{message.message_id}"}
    if not wait or message.status in TERMINAL_STATUSES:
        status = 200 if message.status in TERMINAL_STATUSES else 202
        return answer(status, schemas.MessageView.of(message), location)
    # The wait runs after the resolver returns (``app.serve``): Powertools' resolver is not
    # re-entrant, so requests are resolved one at a time while their waits overlap.
    leave_wait(partial(_gateway, deps, actor, message, started, location))
    return answer(202, schemas.MessageView.of(message), location)


def _enqueue(
    deps: ApiDeps, actor: ActorRecord, body: schemas.MessageIn, idempotency_key: str | None
) -> MessageRecord:
    """Persist the pending message (idempotent on its id), then queue the pointer to it."""
    now = deps.clock.now()
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
    spent = deps.clock.monotonic() - started
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

    def check_pool() -> schemas.RunnerConfigPoolError | None:
        status = deps.tracker.active_error(actor.pool)
        return schemas.RunnerConfigPoolError.of(status) if status is not None else None

    def check_started() -> bool:
        """The message's runner sent ``init`` (now or in an earlier attempt)."""
        current = deps.messages.get(message.actor_id, message.message_id)
        return current is not None and (current.status == "running" or bool(current.runner_id))

    outcome = wait_for_result(
        check_result=check_result,
        check_pool=check_pool,
        policy=policy,
        clock=deps.clock.monotonic,
        sleep=deps.sleep,
        max_wait_s=max_wait,
        check_started=check_started,
    )
    waited = round(deps.clock.monotonic() - started, 3)
    if isinstance(outcome, Ready):
        return answer(200, schemas.MessageView.of(outcome.result), headers)
    if isinstance(outcome, PoolFailed):
        raise ApiError(
            "actor_runner_failed",
            f"the runner pool {actor.pool.id} is failing: {outcome.pool_error.error.summary}",
            metadata={
                "actor_id": actor.actor_id,
                "message_id": message.message_id,
                "pool_error": outcome.pool_error.model_dump(mode="json"),
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
    responses={200: ok(schemas.MessageView), **errors(404, 422)},
)
def get_message(actor_id: Name, message_id: MessageId) -> Response[Any]:
    deps = request_deps(router)
    message = deps.messages.get(actor_id, message_id)
    if message is None:
        raise _not_found(actor_id, message_id)
    return answer(200, schemas.MessageView.of(message))


@router.get(
    "/actors/<actor_id>/messages",
    operation_id="list_messages",
    summary="List an actor's messages, newest first (one page)",
    tags=["messages"],
    responses={200: ok(schemas.MessageList), **errors(404, 422)},
)
def list_messages(
    actor_id: Name,
    status: Annotated[MessageStatus | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response[Any]:
    deps = request_deps(router)
    actor_or_404(deps, actor_id)
    check_cursor(cursor, _message_id_of, schemas.MESSAGE_ID_PATTERN)
    messages, next_cursor = deps.messages.list_for_actor(
        actor_id, status=status, limit=limit, cursor=cursor
    )
    views = [schemas.MessageView.of(m) for m in messages]
    return answer(200, schemas.MessageList(messages=views, next_cursor=next_cursor))


@router.post(
    "/actors/<actor_id>/messages/<message_id>/retry",
    operation_id="retry_message",
    summary="Run a dead-lettered or discarded message again, with a fresh attempt budget",
    tags=["messages"],
    responses={202: ok(schemas.MessageView, "queued again"), **errors(404, 409, 422)},
)
def retry_message(actor_id: Name, message_id: MessageId) -> Response[Any]:
    deps = request_deps(router)
    outcome, stored = deps.messages.reopen(actor_id, message_id, now=deps.clock.now())
    if outcome == "missing" or stored is None:
        raise _not_found(actor_id, message_id)
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
    return answer(202, schemas.MessageView.of(stored.record), location)


def _not_found(actor_id: str, message_id: str) -> ApiError:
    return ApiError(
        "message_not_found",
        f"no message {message_id} for actor {actor_id}",
        metadata={"actor_id": actor_id, "message_id": message_id},
    )


def _message_id_of(cursor: str) -> str:
    """The message id a list cursor points at (``ValueError`` if it does not decode)."""
    from adapters.dynamodb.items import decode_message_cursor

    return decode_message_cursor(cursor)[1]
