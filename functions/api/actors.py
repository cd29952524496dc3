"""Actor routes: create, get (with its error), list, resume, delete."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import JsonValue

from core.actor_status import ActorFacts
from core.api_errors import ApiError
from core.models import (
    NAME_PATTERN,
    ActorRecord,
    MessageEnvelope,
    MessageRecord,
    MessageStatus,
    PoolKey,
)
from functions.api import schemas
from functions.api.deps import ApiDeps
from functions.api.routing import (
    DELETED,
    Cursor,
    Limit,
    Name,
    NamespaceQuery,
    actor_or_404,
    answer,
    check_cursor,
    errors,
    no_content,
    ok,
    pool_not_configured,
    request_deps,
)

router = Router()  # type: ignore[no-untyped-call]


@router.post(
    "/actors",
    operation_id="create_actor",
    summary="Create an actor",
    tags=["actors"],
    responses={201: ok(schemas.ActorView, "created"), **errors(400, 409, 415, 422)},
)
def create_actor(body: schemas.ActorIn) -> Response[Any]:
    deps = request_deps(router)
    pool = PoolKey(namespace=body.namespace, runner_name=body.runner_name)
    pool_not_configured(deps, pool)
    now = deps.clock.now()
    record = ActorRecord(
        **body.model_dump(exclude={"actor_id"}),
        actor_id=body.actor_id or deps.new_id(),
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
    location = {"Location": f"/actors/{created.actor_id}"}
    return answer(201, schemas.ActorView.of(created, None), location)


@router.get(
    "/actors/<actor_id>",
    operation_id="get_actor",
    summary="Get an actor with its error (pool_error while its pool is broken)",
    tags=["actors"],
    responses={200: ok(schemas.ActorView), **errors(404, 422)},
)
def get_actor(actor_id: Name) -> Response[Any]:
    deps = request_deps(router)
    return answer(200, _view(deps, actor_or_404(deps, actor_id)))


@router.get(
    "/actors",
    operation_id="list_actors",
    summary="List a namespace's actors (one page)",
    tags=["actors"],
    responses={200: ok(schemas.ActorList), **errors(422)},
)
def list_actors(
    namespace: NamespaceQuery, limit: Limit = 50, cursor: Cursor = None
) -> Response[Any]:
    from adapters.dynamodb.items import decode_cursor

    deps = request_deps(router)
    check_cursor(cursor, decode_cursor, NAME_PATTERN)
    # The cursor was checked above; a record that does not decode is the store's to isolate,
    # never a "bad cursor".
    actors, next_cursor = deps.actors.list(namespace, limit=limit, cursor=cursor)
    pools = {a.pool for a in actors if _needs_pool(a)}
    statuses = deps.tracker.active_errors(sorted(pools, key=str)) if pools else {}
    views = [schemas.ActorView.of(a, statuses.get(a.pool)) for a in actors]
    return answer(200, schemas.ActorList(actors=views, next_cursor=next_cursor))


@router.post(
    "/actors/<actor_id>/resume",
    operation_id="resume_actor",
    summary="Resume a stopped actor: its held messages run again, in order",
    tags=["actors"],
    responses={200: ok(schemas.ActorView), **errors(404, 409, 422)},
)
def resume_actor(actor_id: Name) -> Response[Any]:
    deps = request_deps(router)
    actor = actor_or_404(deps, actor_id)
    if not deps.actors.resume(actor_id):
        current = actor_or_404(deps, actor_id)
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
    return answer(200, _view(deps, deps.actors.get(actor_id) or actor))


@router.delete(
    "/actors/<actor_id>",
    operation_id="delete_actor",
    summary="Delete an actor; its pending messages end as discarded (actor_deleted)",
    tags=["actors"],
    responses={204: DELETED, **errors(404, 422)},
)
def delete_actor(actor_id: Name) -> Response[Any]:
    deps = request_deps(router)
    if not deps.actors.delete(actor_id):
        raise ApiError("actor_not_found", f"no actor {actor_id}", metadata={"actor_id": actor_id})
    # The actor goes first: a delivery that arrives from now on finds no actor and is dropped
    # by the host (discarded), so nothing queued can run. Then every pending message ends.
    error: dict[str, JsonValue] = {
        "code": "actor_deleted",
        "message": f"actor {actor_id} was deleted; the message will not run",
    }
    for pending in _all_messages(deps, actor_id, "pending"):
        deps.messages.discard(actor_id, pending.message_id, error=error, now=deps.clock.now())
    return no_content()


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


def _view(deps: ApiDeps, actor: ActorRecord) -> schemas.ActorView:
    """The view of one actor; only an actor whose error may be the pool's costs a tracker
    lookup (``list_actors`` batches its page's)."""
    statuses = deps.tracker.active_errors([actor.pool]) if _needs_pool(actor) else {}
    return schemas.ActorView.of(actor, statuses.get(actor.pool))


def _needs_pool(actor: ActorRecord) -> bool:
    return ActorFacts.of(actor).needs_pool_status
