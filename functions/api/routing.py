"""What every route module shares: its deps, answers from view models, OpenAPI entries,
parameters, and the lookups and checks of more than one resource.

Every route reads its dependencies from its router's context (``ApiDeps`` under ``"deps"``),
which ``app.serve`` puts there for one request, so unit tests pass in-memory parts.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel

from core.api_errors import ApiError, ApiErrorBody
from core.models import NAME_PATTERN, ActorRecord, PoolKey
from functions.api import schemas
from functions.api.deps import ApiDeps

JSON = "application/json"

GatewayWait = Callable[[float | None], Response[Any]]
"""The rest of a ``wait=true`` send: given the Lambda's remaining seconds, its answer."""

_pending = threading.local()
"""The gateway wait a ``send_message`` route left for ``app.serve`` to run after the resolver."""


def leave_wait(wait: GatewayWait) -> None:
    """Ask ``app.serve`` to run ``wait`` once the resolver has returned."""
    _pending.wait = wait


def take_pending_wait() -> GatewayWait | None:
    """The wait the last route on this thread asked for (and forget it)."""
    wait: GatewayWait | None = getattr(_pending, "wait", None)
    _pending.wait = None
    return wait


def request_deps(router: Router) -> ApiDeps:
    """The ``ApiDeps`` of the request ``router`` is serving."""
    deps = router.context.get("deps")
    if not isinstance(deps, ApiDeps):  # pragma: no cover - a wiring bug, not an input
        raise RuntimeError("ApiDeps missing from the resolver context")
    return deps


def answer(status: int, view: BaseModel, headers: dict[str, str] | None = None) -> Response[Any]:
    """A JSON answer: ``view`` as pydantic serializes it (the OpenAPI document's shape)."""
    return Response(
        status_code=status, content_type=JSON, body=view.model_dump(mode="json"), headers=headers
    )


def no_content() -> Response[Any]:
    """The 204 of a delete."""
    return Response(status_code=204, content_type=None, body="")


def errors(*codes: int) -> dict[int, OpenAPIResponse]:
    """OpenAPI entries for error answers (all share ``ApiErrorBody``)."""
    answers: dict[int, OpenAPIResponse] = {}
    for code in codes:
        entry: OpenAPIResponse = {
            "description": "error",
            "content": {JSON: {"model": ApiErrorBody}},
        }
        if code == 503:
            entry["description"] = "the gateway: actor_runner_failed or actor_ready_timeout"
            entry["headers"] = {
                "Retry-After": {"description": "seconds", "schema": {"type": "integer"}}
            }
        answers[code] = entry
    return answers


def ok(model: type[BaseModel], description: str = "OK") -> OpenAPIResponse:
    """The OpenAPI entry of a success answer with body ``model``."""
    return {"description": description, "content": {JSON: {"model": model}}}


DELETED: OpenAPIResponse = {"description": "deleted"}

Name = Annotated[str, Path(pattern=NAME_PATTERN)]
"""A namespace, runner name or actor id in a path."""
MessageId = Annotated[str, Path(pattern=schemas.MESSAGE_ID_PATTERN)]
NamespaceQuery = Annotated[str, Query(pattern=NAME_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=2048)]


def pool_not_configured(deps: ApiDeps, pool: PoolKey, **metadata: str) -> None:
    """409 unless ``pool`` has a runner config."""
    if deps.runner_configs.get(pool) is None:
        raise ApiError(
            "pool_not_configured",
            f"no runner config for {pool.id}; PUT /runner-configs/{pool.id} first",
            metadata={**metadata, "pool": pool.id},
        )


def actor_or_404(deps: ApiDeps, actor_id: str) -> ActorRecord:
    """The stored actor; 404 if there is none, ``actor_record_undecodable`` if this version
    cannot read its record."""
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


def check_cursor(cursor: str | None, decode: Callable[[str], str], pattern: str) -> None:
    """422 unless ``cursor`` is absent or decodes to an id matching ``pattern`` (what the store
    put in it, never e.g. ``""``)."""
    if cursor is None:
        return
    try:
        valid = re.fullmatch(pattern, decode(cursor)) is not None
    except ValueError:
        valid = False
    if not valid:
        raise ApiError("invalid_request", "bad cursor", metadata={"param": "cursor"})
