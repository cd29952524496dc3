"""One contract suite for every MessageStore (DynamoDB on moto, in-memory), commit included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.dynamodb.actors import DynamoDBActorStore
from adapters.dynamodb.commit import CommitCancelledError
from adapters.dynamodb.messages import DynamoDBMessageStore
from adapters.dynamodb.slots import DynamoDBSlotStore
from adapters.memory.actors import InMemoryActorStore
from adapters.memory.messages import InMemoryMessageStore
from adapters.memory.slots import InMemorySlotStore
from core.errors import NoCapacity
from core.exceptions import (
    DurableStoreRequiredError,
    ExecutionLeaseLostError,
    StoreCommitFailedError,
)
from core.models import ActorRecord, MessageRecord
from core.ports import ActorStore, MessageStore, SlotStore
from tests.helpers.clock import FakeClock

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RETENTION_S = 30 * 86_400


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=T0)


@pytest.fixture(params=["dynamodb", "memory"])
def backend(
    request: pytest.FixtureRequest, clock: FakeClock
) -> tuple[ActorStore, MessageStore, SlotStore]:
    if request.param == "memory":
        actors = InMemoryActorStore(in_lambda=False)
        slots = InMemorySlotStore(in_lambda=False)
        memory = InMemoryMessageStore(
            actors=actors, slots=slots, in_lambda=False, retention_s=RETENTION_S, clock=clock
        )
        return actors, memory, slots
    tables = request.getfixturevalue("tables")
    client = request.getfixturevalue("dynamodb")
    dactors = DynamoDBActorStore(tables["ActorsTable"], client=client)
    dslots = DynamoDBSlotStore(tables["SlotsTable"], client=client)
    messages = DynamoDBMessageStore(
        tables["MessagesTable"],
        client=client,
        actors=dactors,
        slots=dslots,
        retention_s=RETENTION_S,
        clock=clock,
    )
    return dactors, messages, dslots


@pytest.fixture
def stores(backend: tuple[ActorStore, MessageStore, SlotStore]) -> tuple[ActorStore, MessageStore]:
    return backend[0], backend[1]


@pytest.fixture
def store(stores: tuple[ActorStore, MessageStore]) -> MessageStore:
    return stores[1]


def msg(message_id: str = "m1", actor_id: str = "a1", **kw: Any) -> MessageRecord:
    return MessageRecord(actor_id=actor_id, message_id=message_id, **kw)


def test_create_is_idempotent(store: MessageStore) -> None:
    first = store.create(msg(input={"x": 1.25}, reply_to="q"))
    again = store.create(msg(input={"x": 2}))
    assert again == first
    assert store.get("a1", "m1") == first
    assert first.input == {"x": 1.25} and first.status == "pending"


def test_create_takes_its_times_from_the_clock(store: MessageStore, clock: FakeClock) -> None:
    clock.advance(7)
    created = store.create(msg())
    assert created.created_at == created.updated_at == T0 + timedelta(seconds=7)
    assert store.get("a1", "m1") == created


def test_get_missing_is_none(store: MessageStore) -> None:
    assert store.get("a1", "nope") is None
    assert store.load("a1", "nope") is None


def test_list_running_by_age(store: MessageStore) -> None:
    for i, minutes in enumerate([30, 20, 1]):
        store.create(msg(f"m{i}"))
        claim = store.claim("a1", f"m{i}", owner="o", lease_s=60, now=T0)
        assert claim.outcome == "claimed"
        store.mark_running(
            "a1", f"m{i}", owner="o", runner_id=f"r{i}", now=T0 - timedelta(minutes=minutes)
        )
    store.create(msg("pending"))
    old = store.list_running(T0 - timedelta(minutes=10))
    assert [m.message_id for m in old] == ["m0", "m1"]
    assert all(m.status == "running" for m in old)
    assert old[0].runner_id == "r0"
    assert len(store.list_running(T0, limit=1)) == 1


def test_claim_outcomes(store: MessageStore) -> None:
    assert store.claim("a1", "m1", owner="o1", lease_s=60, now=T0).outcome == "missing"
    store.create(msg())
    first = store.claim("a1", "m1", owner="o1", lease_s=60, now=T0)
    assert first.outcome == "claimed"
    assert first.message is not None and first.message.record.attempts == 1
    assert first.message.lease_owner == "o1"
    busy = store.claim("a1", "m1", owner="o2", lease_s=60, now=T0 + timedelta(seconds=30))
    assert busy.outcome == "busy"
    # The holder crashed: once its lease ran out another execution takes over.
    later = store.claim("a1", "m1", owner="o2", lease_s=60, now=T0 + timedelta(seconds=61))
    assert later.outcome == "claimed"
    assert later.message is not None and later.message.record.attempts == 2
    assert store.mark_running("a1", "m1", owner="o1", runner_id="r", now=T0) is False


def test_claim_without_counting(store: MessageStore) -> None:
    store.create(msg())
    claim = store.claim("a1", "m1", owner="o", lease_s=5, now=T0, count_attempt=False)
    assert claim.message is not None and claim.message.record.attempts == 0


def test_finish_failure_retry_then_final(store: MessageStore) -> None:
    store.create(msg())
    store.claim("a1", "m1", owner="o", lease_s=60, now=T0)
    err = {"code": "serverless_http_error", "status_code": 503, "body": ""}
    assert store.finish_failure(
        "a1",
        "m1",
        owner="o",
        status="pending",
        error=err,
        disposition="retry",
        now=T0,
        next_attempt_at=T0 + timedelta(seconds=4),
    )
    stored = store.load("a1", "m1")
    assert stored is not None and stored.lease_owner is None
    assert stored.record.status == "pending" and stored.record.error == err
    assert stored.record.next_attempt_at == T0 + timedelta(seconds=4)
    # The lease was dropped, so a retry can claim at once.
    assert store.claim("a1", "m1", owner="o2", lease_s=60, now=T0).outcome == "claimed"
    assert not store.finish_failure(
        "a1", "m1", owner="o", status="failed", error=err, disposition="discard", now=T0
    )
    assert store.finish_failure(
        "a1", "m1", owner="o2", status="dead_lettered", error=err, disposition="dead_letter", now=T0
    )
    final = store.get("a1", "m1")
    assert final is not None and final.status == "dead_lettered" and final.finished_at == T0
    assert final.next_attempt_at is None
    assert store.claim("a1", "m1", owner="o3", lease_s=60, now=T0).outcome == "terminal"


def test_release_hands_the_message_back(store: MessageStore) -> None:
    store.create(msg())
    store.claim("a1", "m1", owner="o", lease_s=600, now=T0)
    store.mark_running("a1", "m1", owner="o", runner_id="r", now=T0)
    store.release("a1", "m1", owner="someone-else", now=T0)  # not the holder: no effect
    assert store.get("a1", "m1").status == "running"  # type: ignore[union-attr]
    store.release("a1", "m1", owner="o", now=T0)
    assert store.get("a1", "m1").status == "pending"  # type: ignore[union-attr]
    assert store.claim("a1", "m1", owner="o2", lease_s=600, now=T0).outcome == "claimed"


def test_commit_success_is_atomic_and_once(stores: tuple[ActorStore, MessageStore]) -> None:
    actors, store = stores
    actors.create(
        ActorRecord(actor_id="a1", namespace="ns", runner_name="echo", failure_reason=NoCapacity())
    )
    store.create(msg())
    store.claim("a1", "m1", owner="o", lease_s=60, now=T0)
    store.commit_success(
        "a1", "m1", owner="o", expected_version=0, state={"n": 1}, result={"ok": 1}, now=T0
    )
    a = actors.get("a1")
    m = store.get("a1", "m1")
    assert a is not None and a.state == {"n": 1} and a.state_version == 1
    assert a.failure_reason is None
    assert m is not None and m.status == "succeeded" and m.result == {"ok": 1}
    with pytest.raises(ExecutionLeaseLostError):
        store.commit_success(
            "a1", "m1", owner="o", expected_version=1, state={"n": 2}, result=None, now=T0
        )
    a = actors.get("a1")
    assert a is not None and a.state == {"n": 1} and a.state_version == 1


def test_commit_conflicts_back_off_then_commit(
    backend: tuple[ActorStore, DynamoDBMessageStore, SlotStore], clock: FakeClock
) -> None:
    actors, store, _ = backend
    assert store.commit is not None
    real = type(store.commit)

    class Conflicting(real):  # type: ignore[valid-type,misc]
        """DynamoDB cancels the first two tries: another write to an item was in flight."""

        def _transact(self, items: Any) -> None:
            if len(clock.sleeps) < 2:
                raise CommitCancelledError(["None", "TransactionConflict"])
            super()._transact(items)

    store.commit = Conflicting(store, actors, None, clock.sleep, lambda: 0.0)
    actors.create(ActorRecord(actor_id="a1", namespace="ns", runner_name="echo"))
    store.create(msg())
    store.claim("a1", "m1", owner="o", lease_s=60, now=T0)
    store.commit_success(
        "a1", "m1", owner="o", expected_version=0, state={"n": 1}, result=None, now=T0
    )
    # Half the backoff at rand=0: base 0.02 s, doubling (core.policy.backoff_s).
    assert clock.sleeps == [0.01, 0.02]
    m = store.get("a1", "m1")
    assert m is not None and m.status == "succeeded"


def test_memory_commit_stores_share_one_lock() -> None:
    actors = InMemoryActorStore(in_lambda=False)
    slots = InMemorySlotStore(in_lambda=False)
    messages = InMemoryMessageStore(actors=actors, slots=slots, in_lambda=False)
    assert messages.lock is actors.lock is slots.lock


def test_commit_refused_when_state_moved(stores: tuple[ActorStore, MessageStore]) -> None:
    actors, store = stores
    actors.create(ActorRecord(actor_id="a1", namespace="ns", runner_name="echo"))
    store.create(msg())
    store.claim("a1", "m1", owner="o", lease_s=60, now=T0)
    with pytest.raises(StoreCommitFailedError):
        store.commit_success(
            "a1", "m1", owner="o", expected_version=7, state={"n": 1}, result=None, now=T0
        )
    m = store.get("a1", "m1")
    a = actors.get("a1")
    assert m is not None and m.status == "pending"
    assert a is not None and a.state is None


def test_commit_refused_after_lease_taken_over(stores: tuple[ActorStore, MessageStore]) -> None:
    actors, store = stores
    actors.create(ActorRecord(actor_id="a1", namespace="ns", runner_name="echo"))
    store.create(msg())
    store.claim("a1", "m1", owner="slow", lease_s=1, now=T0)
    store.claim("a1", "m1", owner="new", lease_s=60, now=T0 + timedelta(seconds=5))
    with pytest.raises(ExecutionLeaseLostError):
        store.commit_success(
            "a1", "m1", owner="slow", expected_version=0, state=1, result=None, now=T0
        )


def test_errors_append_never_breaks_commit(stores: tuple[ActorStore, MessageStore]) -> None:
    from core.errors import InternalError
    from core.events import ErrorEvent, read_errors

    actors, store = stores
    actors.create(ActorRecord(actor_id="a1", namespace="ns", runner_name="echo"))
    store.create(msg())
    store.claim("a1", "m1", owner="o", lease_s=60, now=T0)
    read_version = actors.get("a1").state_version  # type: ignore[union-attr]
    actors.append_errors(
        "a1", [ErrorEvent.of(InternalError(message="x"), scope="actor", now=T0)], cap=5
    )
    actors.set_failure_reason("a1", NoCapacity())
    store.commit_success(
        "a1", "m1", owner="o", expected_version=read_version, state=2, result=None, now=T0
    )
    a = actors.get("a1")
    assert a is not None and a.state == 2
    assert len(read_errors(a.extra)[0]) == 1  # the commit did not clobber telemetry


def test_outbox_marks(store: MessageStore) -> None:
    store.create(msg())
    store.mark_effect("a1", "m1", "reply", now=T0)
    stored = store.load("a1", "m1")
    assert stored is not None and stored.replied and not stored.dlq_sent
    store.mark_effect("a1", "m1", "dlq", now=T0)
    stored = store.load("a1", "m1")
    assert stored is not None and stored.dlq_sent


def test_in_memory_store_refused_in_lambda() -> None:
    with pytest.raises(DurableStoreRequiredError) as info:
        InMemoryMessageStore(in_lambda=True)
    assert info.value.code == "durable_store_required:idempotency_store"


@pytest.mark.parametrize("slot_lost", [False, True], ids=["slot_held", "slot_taken_over"])
def test_commit_releases_the_slot_in_the_same_write(
    backend: tuple[ActorStore, MessageStore, SlotStore], slot_lost: bool
) -> None:
    actors, store, slots = backend
    actors.create(ActorRecord(actor_id="a1", namespace="ns", runner_name="echo"))
    store.create(msg())
    store.claim("a1", "m1", owner="o", lease_s=60, now=T0)
    lease = slots.acquire("ns/echo", total=1, owner="o", lease_s=10, now=1000.0)
    assert lease is not None
    if slot_lost:  # our slot lease ran out and another execution took the slot
        assert slots.acquire("ns/echo", total=1, owner="x", lease_s=10, now=1011.0) is not None
    released = store.commit_success(
        "a1", "m1", owner="o", expected_version=0, state=1, result=2, now=T0, slot=lease
    )
    assert store.get("a1", "m1").status == "succeeded"  # type: ignore[union-attr]
    assert actors.get("a1").state == 1  # type: ignore[union-attr]
    assert slots.held("ns/echo", now=1012.0) == (1 if slot_lost else 0)
    assert released is not slot_lost


# --- per-actor listing and discard ---------------------------------------------------------------

T = datetime(2026, 1, 1, tzinfo=UTC)


def test_list_for_actor_newest_first_paged_and_filtered(store: MessageStore) -> None:
    for n in range(5):
        store.create(msg(f"m{n}", created_at=T + timedelta(seconds=n), updated_at=T))
    store.create(msg("other", actor_id="a2", created_at=T, updated_at=T))
    page, cursor = store.list_for_actor("a1", limit=2)
    assert [m.message_id for m in page] == ["m4", "m3"] and cursor
    page, cursor = store.list_for_actor("a1", limit=2, cursor=cursor)
    assert [m.message_id for m in page] == ["m2", "m1"] and cursor
    page, cursor = store.list_for_actor("a1", limit=2, cursor=cursor)
    assert [m.message_id for m in page] == ["m0"] and cursor is None
    oldest, _ = store.list_for_actor("a1", limit=10, oldest_first=True)
    assert [m.message_id for m in oldest] == ["m0", "m1", "m2", "m3", "m4"]
    assert store.discard("a1", "m2", error={"code": "actor_deleted"}, now=T) is True
    pending, _ = store.list_for_actor("a1", status="pending", limit=2)
    assert [m.message_id for m in pending] == ["m4", "m3"]
    pending, cursor = store.list_for_actor("a1", status="pending", limit=10)
    assert [m.message_id for m in pending] == ["m4", "m3", "m1", "m0"] and cursor is None
    discarded, _ = store.list_for_actor("a1", status="discarded")
    assert [(m.message_id, m.disposition) for m in discarded] == [("m2", "discard")]
    assert store.list_for_actor("nobody") == ([], None)


def test_discard_skips_final_and_held_messages(store: MessageStore) -> None:
    store.create(msg("held"))
    store.create(msg("done"))
    now = datetime.now(UTC)
    assert store.claim("a1", "held", owner="o", lease_s=60, now=now).outcome == "claimed"
    assert store.discard("a1", "held", error={"code": "actor_deleted"}, now=now) is False
    store.claim("a1", "done", owner="o", lease_s=60, now=now)
    store.finish_failure(
        "a1", "done", owner="o", status="failed", error=None, disposition="discard", now=now
    )
    assert store.discard("a1", "done", error={"code": "actor_deleted"}, now=now) is False
    assert store.discard("a1", "missing", error={"code": "actor_deleted"}, now=now) is False
    held = store.get("a1", "held")
    assert held is not None and held.status == "pending"
    # Once the lease ran out (a crashed host), the message can be discarded.
    later = now + timedelta(seconds=61)
    assert store.discard("a1", "held", error={"code": "actor_deleted"}, now=later) is True
    final = store.get("a1", "held")
    assert final is not None and final.status == "discarded"
    assert final.error == {"code": "actor_deleted"}
    assert store.claim("a1", "held", owner="p", lease_s=60, now=later).outcome == "terminal"


def raw_item(store: MessageStore, actor_id: str, message_id: str) -> dict[str, Any]:
    """The item as stored (bookkeeping attributes included)."""
    if isinstance(store, InMemoryMessageStore):
        return dict(store._items[(actor_id, message_id)])
    assert isinstance(store, DynamoDBMessageStore)
    key = {"actor_id": {"S": actor_id}, "message_id": {"S": message_id}}
    item: dict[str, Any] = store.client.get_item(TableName=store.table_name, Key=key)["Item"]
    return item


def test_oldest_open_follows_creation_order_and_final_records_leave(store: MessageStore) -> None:
    assert store.oldest_open("a1") is None
    store.create(msg("b", created_at=T0))
    store.create(msg("a", created_at=T0 + timedelta(seconds=1)))
    store.create(msg("z", actor_id="a2", created_at=T0 - timedelta(days=1)))
    oldest = store.oldest_open("a1")
    assert oldest is not None and oldest[0] == "b"  # creation order, not id order
    store.claim("a1", "b", owner="o", lease_s=60, now=T0)
    store.finish_failure(
        "a1", "b", owner="o", status="discarded", error=None, disposition="discard", now=T0
    )
    oldest = store.oldest_open("a1")
    assert oldest is not None and oldest[0] == "a"
    assert "open_key" not in raw_item(store, "a1", "b")


def test_final_records_get_a_ttl_and_leave_the_running_index(store: MessageStore) -> None:
    store.create(msg())
    store.claim("a1", "m1", owner="o", lease_s=60, now=T0)
    store.mark_running("a1", "m1", owner="o", runner_id="r", now=T0)
    running = raw_item(store, "a1", "m1")
    assert {"running_shard", "running_since", "open_key"} <= set(running)
    assert "expires_at" not in running
    store.finish_failure(
        "a1", "m1", owner="o", status="dead_lettered", error=None, disposition="dead_letter", now=T0
    )
    final = raw_item(store, "a1", "m1")
    assert not {"running_shard", "running_since", "open_key"} & set(final)
    assert int(final["expires_at"]["N"]) == int(T0.timestamp() + RETENTION_S)


def test_note_waiting_only_on_an_unheld_pending_message_without_error(store: MessageStore) -> None:
    waiting = {"code": "no_capacity"}
    store.create(msg())
    assert store.note_waiting("a1", "m1", error=waiting, now=T0)
    assert store.get("a1", "m1").error == waiting  # type: ignore[union-attr]
    store.create(msg("m2", error={"code": "serverless_http_error", "status_code": 503}))
    assert not store.note_waiting("a1", "m2", error=waiting, now=T0)  # never masks a failure
    store.create(msg("m3"))
    store.claim("a1", "m3", owner="o", lease_s=60, now=T0)
    assert not store.note_waiting("a1", "m3", error=waiting, now=T0)  # held: it runs
    assert not store.note_waiting("a1", "missing", error=waiting, now=T0)


def test_give_up_dead_letters_only_an_unheld_open_message(store: MessageStore) -> None:
    error = {"code": "receive_limit_reached", "receive_count": 99}
    store.create(msg())
    given = store.give_up("a1", "m1", error=error, now=T0)
    assert given is not None and given.record.status == "dead_lettered"
    assert (given.record.error, given.record.disposition) == (error, "dead_letter")
    assert store.give_up("a1", "m1", error=error, now=T0) is None  # final already
    store.create(msg("m2"))
    store.claim("a1", "m2", owner="o", lease_s=60, now=T0)
    assert store.give_up("a1", "m2", error=error, now=T0 + timedelta(seconds=10)) is None
    later = store.give_up("a1", "m2", error=error, now=T0 + timedelta(seconds=61))
    assert later is not None and later.record.status == "dead_lettered"  # the holder is gone


def test_reopen_gives_a_dead_letter_a_fresh_budget_and_keeps_its_history(
    store: MessageStore,
) -> None:
    assert store.reopen("a1", "m1", now=T0) == ("missing", None)
    store.create(msg(created_at=T0))
    store.claim("a1", "m1", owner="o1", lease_s=60, now=T0)
    assert store.claim("a1", "m1", owner="o2", lease_s=60, now=T0 + timedelta(seconds=61)).message
    err = {"code": "serverless_http_error", "status_code": 503, "body": ""}
    outcome, stored = store.reopen("a1", "m1", now=T0)
    assert outcome == "not_retryable" and stored is not None  # pending: not a dead letter
    store.finish_failure(
        "a1", "m1", owner="o2", status="dead_lettered", error=err, disposition="dead_letter", now=T0
    )
    store.mark_effect("a1", "m1", "dlq", now=T0)
    outcome, stored = store.reopen("a1", "m1", now=T0 + timedelta(minutes=1))
    assert outcome == "reopened" and stored is not None
    assert (stored.record.status, stored.record.attempts, stored.budget_attempts) == (
        "pending",
        2,
        0,
    )
    assert (stored.retries, stored.dlq_sent, stored.record.error) == (1, False, err)
    assert stored.record.finished_at is None
    assert "expires_at" not in raw_item(store, "a1", "m1")
    oldest = store.oldest_open("a1")
    assert oldest is not None and oldest[0] == "m1"  # back in its place in the actor's order
    claim = store.claim("a1", "m1", owner="o3", lease_s=60, now=T0 + timedelta(minutes=2))
    assert claim.message is not None and claim.message.budget_attempts == 1
    assert claim.message.record.attempts == 3
