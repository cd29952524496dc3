"""The ports: every Protocol the functions and adapters meet, once, with the values they carry.

Adapters implement them (``adapters/dynamodb/`` against DynamoDB, ``adapters/memory.py`` in
memory); functions depend on them only. Time comes in through ``Clock`` so nothing below
``functions/`` reads the system clock itself.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import JsonValue

from core.errors import ActorError, ActorFailed, ActorFailureReason, RunnerPoolError
from core.events import ErrorEvent
from core.hysteresis import HysteresisPolicy, Outcome, PoolErrorStatus, PoolState
from core.models import (
    ActorRecord,
    ActorStatus,
    MessageRecord,
    MessageStatus,
    PoolKey,
    RunnerConfig,
)

if TYPE_CHECKING:  # the frames module builds its validators at import; ports need only the name
    from core.protocol import Frame


class Clock(Protocol):
    """Wall time (UTC, for records) and monotonic seconds (for deadlines), from one place."""

    def now(self) -> datetime:
        """The current UTC time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""


# --- messages ------------------------------------------------------------------------------

Effect = Literal["dlq", "reply"]
ClaimOutcome = Literal["claimed", "missing", "terminal", "busy"]
Disposition = Literal["retry", "discard", "dead_letter", "stop"]
ReopenOutcome = Literal["reopened", "missing", "not_retryable"]


@dataclass(frozen=True)
class StoredMessage:
    """A message record plus the execution bookkeeping kept beside it."""

    record: MessageRecord
    lease_owner: str | None = None
    lease_until: float | None = None
    dlq_sent: bool = False
    replied: bool = False
    attempt_base: int = 0
    retries: int = 0
    open_key: str | None = None

    @property
    def budget_attempts(self) -> int:
        """Attempts that count against the policy's ``max_attempts`` (since the last retry)."""
        return max(self.record.attempts - self.attempt_base, 0)


@dataclass(frozen=True)
class Claim:
    """The result of ``claim``: ``claimed`` (with the record as it now is) or why not."""

    outcome: ClaimOutcome
    message: StoredMessage | None = None


class MessageStore(Protocol):
    """Messages by ``(actor_id, message_id)``, and executions' writes to them."""

    def create(self, message: MessageRecord) -> MessageRecord:
        """Store a new message; if it exists already, return the stored one (idempotent)."""

    def get(self, actor_id: str, message_id: str) -> MessageRecord | None:
        """The message, or ``None``."""

    def list_running(self, older_than: datetime, limit: int = 100) -> list[MessageRecord]:
        """Messages with status ``running`` last updated before ``older_than``, oldest first."""

    def list_for_actor(
        self,
        actor_id: str,
        *,
        status: MessageStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[list[MessageRecord], str | None]:
        """A page of the actor's messages by ``created_at`` (newest first unless
        ``oldest_first``), optionally of one ``status``, and the next page's cursor."""

    def discard(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> bool:
        """A message that is not final and not held by an execution ends ``discarded``
        (disposition ``discard``); ``False`` if it is final or held."""

    def load(self, actor_id: str, message_id: str) -> StoredMessage | None:
        """The message with its lease and outbox marks."""

    def claim(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        lease_s: float,
        now: datetime,
        count_attempt: bool = True,
    ) -> Claim:
        """Take the message's lease for ``lease_s`` and count an attempt."""

    def mark_running(
        self, actor_id: str, message_id: str, *, owner: str, runner_id: str, now: datetime
    ) -> bool:
        """Status ``running`` on ``runner_id`` (after ``init``); ``False`` if the lease is lost."""

    def finish_failure(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        status: MessageStatus,
        error: dict[str, JsonValue] | None,
        disposition: Disposition,
        now: datetime,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """Record a failed attempt's outcome and drop the lease; ``False`` if the lease is lost."""

    def release(self, actor_id: str, message_id: str, *, owner: str, now: datetime) -> None:
        """Drop the lease; a held, unfinished message goes back to ``pending`` (handed back)."""

    def commit_success(
        self,
        actor_id: str,
        message_id: str,
        *,
        owner: str,
        expected_version: int,
        state: JsonValue,
        result: JsonValue,
        now: datetime,
        slot: SlotLease | None = None,
    ) -> bool:
        """Atomically: the actor's new state (if still at ``expected_version``) and the result;
        and, when the store knows the slots table, the release of ``slot`` in the same write.

        Returns ``True`` if ``slot`` was released too. Raises ``ExecutionLeaseLostError`` if this
        execution no longer holds the message (or it is final already) and
        ``StoreCommitFailedError`` if the actor's state moved on.
        """

    def mark_effect(self, actor_id: str, message_id: str, effect: Effect, *, now: datetime) -> None:
        """Mark an outbox side effect (``dlq`` or ``reply``) as done."""

    def note_waiting(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> bool:
        """Say why a pending, unheld message waits (e.g. ``no_capacity``) if it has no error."""

    def give_up(
        self, actor_id: str, message_id: str, *, error: dict[str, JsonValue], now: datetime
    ) -> StoredMessage | None:
        """Dead-letter a message nobody holds (the host's own redrive limit); ``None`` if it is
        final already or a live execution holds it."""

    def reopen(
        self, actor_id: str, message_id: str, *, now: datetime
    ) -> tuple[ReopenOutcome, StoredMessage | None]:
        """A ``dead_lettered``/``discarded`` message back to ``pending`` with a fresh attempt
        budget (its history kept)."""

    def oldest_open(self, actor_id: str) -> tuple[str, str] | None:
        """``(message_id, open_key)`` of the actor's oldest message that is not final."""


# --- actors --------------------------------------------------------------------------------


class ActorExistsError(Exception):
    """An actor with this ``actor_id`` already exists."""

    def __init__(self, actor_id: str) -> None:
        super().__init__(f"actor {actor_id!r} already exists")
        self.actor_id = actor_id


class ActorStore(Protocol):
    """Actors by id, listed by namespace."""

    def create(self, actor: ActorRecord) -> ActorRecord:
        """Store a new actor; raises ``ActorExistsError`` if the id is taken."""

    def get(self, actor_id: str) -> ActorRecord | None:
        """The actor, or ``None``."""

    def get_many(self, actor_ids: Sequence[str]) -> dict[str, ActorRecord]:
        """The actors that exist among ``actor_ids``, by id (one batched read)."""

    def list(
        self, namespace: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[builtins.list[ActorRecord], str | None]:
        """A page of actors of ``namespace`` by ``actor_id``, and the next page's cursor."""

    def set_failure_reason(
        self,
        actor_id: str,
        reason: ActorFailureReason | None,
        *,
        only_if_empty: bool = False,
        only_if_code: str | None = None,
    ) -> bool:
        """Set (or clear, with ``None``) the failure reason; ``True`` if written."""

    def append_errors(self, actor_id: str, events: Sequence[ErrorEvent], *, cap: int) -> None:
        """Append error events to ``extra.errors`` (newest ``cap`` kept)."""

    def set_status(
        self,
        actor_id: str,
        status: ActorStatus,
        *,
        last_actor_error: ActorFailed | None = None,
        stop_error: ActorError | None = None,
    ) -> None:
        """Set the actor's status (``stopped`` by the error policy, with the error that stopped
        it), and its last actor error."""

    def set_last_actor_error(self, actor_id: str, error: ActorFailed | None) -> None:
        """Remember (or forget) the last ``actor_failed`` error of the actor's own code."""

    def set_start_error(self, actor_id: str, error: RunnerPoolError | None) -> None:
        """A pending message's latest start failed with ``error`` (``None``: forget it)."""

    def clear_on_init(self, actor_id: str) -> None:
        """An execution reached ``init``: forget the start error, the failure reason and the
        last actor error (they described earlier executions)."""

    def resume(self, actor_id: str) -> bool:
        """``stopped`` -> ``active``, forgetting the stop error; ``False`` if not stopped."""

    def delete(self, actor_id: str) -> bool:
        """Remove the actor; ``False`` if it did not exist."""


# --- slots ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotLease:
    """One taken slot; give it back with ``release``."""

    pool_id: str
    slot: int
    owner: str
    expires_at: float


class SlotStore(Protocol):
    """Per-pool slot leases that expire."""

    def acquire(
        self,
        pool_id: str,
        *,
        total: int,
        owner: str,
        lease_s: float,
        now: float,
        start: int | None = None,
    ) -> SlotLease | None:
        """A free slot among ``total`` (``start`` tried first), or ``None`` if all are held."""

    def release(self, lease: SlotLease) -> None:
        """Give the slot back (only if this lease still holds it)."""

    def held(self, pool_id: str, *, now: float) -> int:
        """How many slots of ``pool_id`` are held right now."""


# --- runner configs, probes, pool errors ---------------------------------------------------


class RunnerConfigStore(Protocol):
    """Runner configs by pool ``(namespace, runner_name)``."""

    def put(self, config: RunnerConfig) -> None:
        """Create or replace the config of ``config.pool`` (a new revision)."""

    def put_if(self, config: RunnerConfig, revision: str | None) -> bool:
        """Like ``put``, only if the stored revision is still ``revision`` (None: no config);
        ``False`` if another write came first."""

    def get(self, pool: PoolKey) -> RunnerConfig | None:
        """The config of ``pool``, or ``None``."""

    def get_with_revision(self, pool: PoolKey) -> tuple[RunnerConfig, str] | None:
        """The config of ``pool`` and the revision ``put_if`` compares, or ``None``."""

    def delete(self, pool: PoolKey) -> bool:
        """Remove the config of ``pool``; ``True`` if there was one."""

    def list(self, namespace: str) -> builtins.list[RunnerConfig]:
        """Every config in ``namespace``, ordered by ``runner_name``."""

    def list_all(self) -> builtins.list[RunnerConfig]:
        """Every config of every namespace (the pool manager's round), ordered by pool id."""


@dataclass(frozen=True)
class ProbeState:
    """How often a pool's probes failed in a row and when it may be probed next."""

    pool_id: str
    failures: int = 0
    next_probe_at: float = 0.0
    """Epoch seconds; a claim moves it forward by the lease while a round runs."""
    last_error_code: str | None = None


class ProbeStore(Protocol):
    """Probe backoff by pool."""

    def get(self, pool: PoolKey) -> ProbeState | None:
        """The pool's state, or ``None`` (never failed since the last reset)."""

    def claim(self, pool: PoolKey, *, now: float, lease_s: float) -> ProbeState | None:
        """Take the pool's probe round if it is due; ``None`` if not due or taken by another."""

    def record_failure(
        self, pool: PoolKey, *, failures: int, next_probe_at: float, error_code: str | None
    ) -> None:
        """Store the failed round's count and when to probe next."""

    def reset(self, pool: PoolKey) -> None:
        """Forget the pool's backoff: it is due at once."""


@dataclass(frozen=True)
class ApplyResult:
    """What ``apply`` did: ``state`` is the post-image if ``written``, else the state it found."""

    state: PoolState
    written: bool


class PoolErrorStore(Protocol):
    """Per-pool tracker state. ``apply`` is linearizable: it acts as ``observe`` on the state
    the store holds at that instant, in one atomic step, whatever any other writer does."""

    durable: bool
    """False for stores that lose their state with the process (refused inside Lambda)."""

    def apply(
        self,
        pool: PoolKey,
        outcome: Outcome,
        *,
        now: datetime,
        policy: HysteresisPolicy,
        hint: PoolState | None = None,
    ) -> ApplyResult:
        """Apply one outcome; a success while healthy writes nothing. ``hint`` (the caller's
        belief of the current state) only picks the first attempt: it never changes the result."""

    def retire(self, pool: PoolKey, *, now: datetime) -> None:
        """The pool's config was deleted: it becomes healthy with no error kept (the version
        still grows); a pool never written stays unwritten."""

    def get(self, pool: PoolKey) -> PoolState:
        """The pool's current state (``PoolState()`` if it was never written)."""

    def get_many(self, pools: Iterable[PoolKey]) -> dict[PoolKey, PoolState]:
        """The current state of every given pool, keyed by pool."""


# --- tracker -------------------------------------------------------------------------------


class Tracker(Protocol):
    """Runner start outcomes in, each pool's active error out (with hysteresis)."""

    def report_error(self, pool: PoolKey, error: RunnerPoolError) -> None:
        """A runner start failed (``error``)."""

    def report_success(self, pool: PoolKey) -> None:
        """A runner started (``init`` arrived)."""

    def active_error(self, pool: PoolKey) -> PoolErrorStatus | None:
        """The pool's active error, or ``None`` while healthy."""

    def active_errors(self, pools: Iterable[PoolKey]) -> dict[PoolKey, PoolErrorStatus]:
        """The pools among ``pools`` with an active error."""

    def retire(self, pool: PoolKey) -> None:
        """Forget the pool's error for good (its runner config was deleted or re-created)."""


# --- runner client -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe start: ``ok`` once the ``init`` frame arrived."""

    ok: bool
    runner_id: str | None
    time_to_init_s: float | None
    error: RunnerPoolError | None


class RunnerStarter(Protocol):
    """Starts runners (``adapters.runner.client.AsyncRunnerClient``)."""

    def start(
        self, target: Any, body: Mapping[str, Any], *, deadline: float | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Frame]]:
        """Open one ``/start`` stream of ``target`` (a ``StartTarget``) and yield its frames;
        ``deadline`` is absolute, on the client's monotonic clock."""
