"""Records -> API views, with the pool's active error folded in (the enrichment)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pydantic import JsonValue

from core.actor_status import ActorFacts
from core.actor_status import actor_error as rule
from core.errors import ActorError, PoolErrorView, RunnerPoolError
from core.events import read_errors
from core.models import ActorRecord, MessageRecord, RunnerConfig


class PoolErrorStatusLike(Protocol):
    """What the views read from the tracker's ``PoolErrorStatus``."""

    @property
    def error(self) -> RunnerPoolError: ...

    def to_json(self) -> dict[str, Any]: ...

    def to_view(self) -> PoolErrorView: ...


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def actor_error(actor: ActorRecord, pool_status: PoolErrorStatusLike | None) -> ActorError | None:
    """The actor's API ``error``: the one rule of ``core.actor_status`` over its stored facts."""
    view = pool_status.to_view() if pool_status is not None else None
    return rule(ActorFacts.of(actor), view)


def actor_view(actor: ActorRecord, pool_status: PoolErrorStatusLike | None) -> dict[str, Any]:
    """JSON of ``ActorView``; keys with no value are omitted (``error`` in particular)."""
    error = actor_error(actor, pool_status)
    events, dropped = read_errors(actor.extra)
    view: dict[str, Any] = {
        "actor_id": actor.actor_id,
        "namespace": actor.namespace,
        "runner_name": actor.runner_name,
        "key": actor.key,
        "state": actor.state,
        "state_version": actor.state_version,
        "status": actor.status,
        "error": error.to_json() if error is not None else None,
        "error_policy": actor.error_policy.model_dump(mode="json") if actor.error_policy else None,
        "errors": (
            {"events": [e.to_json() for e in events], "dropped": dropped}
            if events or dropped
            else None
        ),
        "created_at": _iso(actor.created_at),
        "updated_at": _iso(actor.updated_at),
    }
    return {k: v for k, v in view.items() if v is not None or k == "state"}


def runner_config_view(
    config: RunnerConfig, pool_status: PoolErrorStatusLike | None
) -> dict[str, Any]:
    """JSON of ``RunnerConfigView``: header values redacted, ``pool_error`` when active."""
    view: dict[str, Any] = config.model_dump(mode="json")  # redacts headers
    if pool_status is not None:
        view["pool_error"] = pool_status.to_json()
    return view


def message_view(message: MessageRecord) -> dict[str, JsonValue]:
    """JSON of ``MessageView``."""
    data: dict[str, JsonValue] = message.model_dump(mode="json")
    return data
