"""Why an actor's work is not running now: the one rule behind the API's actor ``error``.

Pure: ``actor_error(facts, pool_status)`` over what is stored on the actor (``ActorFacts``) and
its pool's active error as the tracker sees it now. docs/api.md has the same table:

=====================================================  =========================================
the actor                                              ``error``
=====================================================  =========================================
stopped                                                the error that stopped it (any kind),
                                                       until resumed
a pending message's latest start failed with a         ``pool_error{error, first_seen,
``RunnerPoolError``, or it waits for a runner slot,    last_seen, count}``
and the pool has an active error
the same, and the pool has no active error (yet)       ``no_capacity``
its runner went silent (``runner_no_response``)        ``runner_no_response{runner_id}``, until a
                                                       later execution reaches ``init``
its own code failed (``actor_failed``)                 ``actor_failed{error_code, message}``,
                                                       until a later execution reaches ``init``
nothing pending, nothing failed since                  none (the key is omitted)
=====================================================  =========================================

Rows are checked top to bottom. A blocked start outranks an older ``runner_no_response`` or
``actor_failed``: the pool error is why nothing runs *now* (and it must never be hidden).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import (
    ActorError,
    ActorFailed,
    ActorFailureReason,
    NoCapacity,
    OtherActorError,
    OtherFailureReason,
    PoolErrorView,
    RunnerNoResponse,
    RunnerPoolError,
)
from core.models import ActorRecord, ActorStatus


@dataclass(frozen=True)
class ActorFacts:
    """What is stored on an actor that the rule reads (the host and pool manager keep it)."""

    status: ActorStatus = "active"
    stop_error: ActorError | None = None
    """The error that stopped the actor (set with ``status = stopped``)."""
    start_error: RunnerPoolError | None = None
    """A pending message's latest start failed with this (cleared on ``init`` or when the
    message ends)."""
    failure_reason: ActorFailureReason | None = None
    """``no_capacity`` (a pending message waits for a slot) or ``runner_no_response``."""
    actor_failed: ActorFailed | None = None
    """The actor's own code failed (cleared when a later execution reaches ``init``)."""

    @classmethod
    def of(cls, actor: ActorRecord) -> ActorFacts:
        """The facts stored on ``actor``."""
        return cls(
            status=actor.status,
            stop_error=actor.stop_error,
            start_error=actor.start_error,
            failure_reason=actor.failure_reason,
            actor_failed=actor.last_actor_error,
        )

    @property
    def start_blocked(self) -> bool:
        """A pending message cannot get a runner: its start failed, or it waits for a slot."""
        return self.start_error is not None or isinstance(self.failure_reason, NoCapacity)

    @property
    def needs_pool_status(self) -> bool:
        """Whether ``actor_error`` reads the pool's status (only then is a tracker lookup due)."""
        stopped_by = (self.stop_error or _history(self)) if self.status == "stopped" else None
        return stopped_by is None and self.start_blocked

    @property
    def has_facts(self) -> bool:
        """Anything that an execution reaching ``init`` clears."""
        return (
            self.start_error is not None
            or self.failure_reason is not None
            or self.actor_failed is not None
        )


def actor_error(facts: ActorFacts, pool_status: PoolErrorView | None) -> ActorError | None:
    """The actor's API ``error`` now (``None``: omit it); see the module's table."""
    if facts.status == "stopped":
        stopped = facts.stop_error or _history(facts)
        if stopped is not None:
            return stopped
    if facts.start_blocked:
        return pool_status if pool_status is not None else NoCapacity()
    return _history(facts)


def _history(facts: ActorFacts) -> ActorError | None:
    """What went wrong since the actor's last ``init``: its runner went silent, or its code."""
    reason = facts.failure_reason
    if isinstance(reason, RunnerNoResponse):
        return reason
    if isinstance(reason, OtherFailureReason):  # a newer build's reason: show it as it is
        return OtherActorError(data=reason.data)
    return facts.actor_failed
