"""One contract suite for every ActorStore: DynamoDB (moto server over HTTP) and in-memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.dynamodb.actors import APPEND_BASE_S, DynamoDBActorStore
from adapters.memory.actors import InMemoryActorStore
from core.errors import (
    ActorFailed,
    NoCapacity,
    OtherFailureReason,
    RunnerNoResponse,
    ServerlessHttpError,
)
from core.events import ErrorEvent, read_errors
from core.exceptions import DurableStoreRequiredError
from core.models import ActorRecord, ErrorPolicy
from core.ports import ActorExistsError, ActorStore
from tests.helpers.clock import T0, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest, clock: FakeClock) -> DynamoDBActorStore:
    timing: dict[str, Any] = {"clock": clock, "sleep": clock.sleep, "rand": lambda: 1.0}
    if request.param == "memory":
        return InMemoryActorStore(in_lambda=False, **timing)
    tables = request.getfixturevalue("tables")
    client = request.getfixturevalue("dynamodb")
    return DynamoDBActorStore(tables["ActorsTable"], client=client, **timing)


def actor(actor_id: str = "a1", namespace: str = "ns", **kw: Any) -> ActorRecord:
    return ActorRecord(actor_id=actor_id, namespace=namespace, runner_name="echo", **kw)


def event(i: int) -> ErrorEvent:
    return ErrorEvent.of(
        ServerlessHttpError(status_code=500 + i),
        scope="pool",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_create_get_round_trips_every_field(store: ActorStore) -> None:
    created = store.create(
        actor(
            key="k",
            state={"n": 1.5, "list": [1, "x", None], "nested": {"t": True}},
            failure_reason=RunnerNoResponse(runner_id="r1"),
            last_actor_error=ActorFailed(error_code="boom", message="bad"),
            error_policy=ErrorPolicy(on_actor="stop", max_attempts=2),
            extra={"tag": "v"},
        )
    )
    assert created.created_at is not None
    got = store.get("a1")
    assert got == created
    assert got is not None and got.state == {
        "n": 1.5,
        "list": [1, "x", None],
        "nested": {"t": True},
    }


def test_create_twice_raises(store: ActorStore) -> None:
    store.create(actor())
    with pytest.raises(ActorExistsError):
        store.create(actor(state={"other": True}))
    got = store.get("a1")
    assert got is not None and got.state is None


def test_get_missing_is_none(store: ActorStore) -> None:
    assert store.get("nope") is None


def test_list_pages_by_namespace(store: ActorStore) -> None:
    for i in range(5):
        store.create(actor(f"a{i}"))
    store.create(actor("other", namespace="ns2"))
    page1, cursor = store.list("ns", limit=2)
    assert [a.actor_id for a in page1] == ["a0", "a1"]
    assert cursor is not None
    page2, cursor2 = store.list("ns", limit=2, cursor=cursor)
    assert [a.actor_id for a in page2] == ["a2", "a3"]
    page3, cursor3 = store.list("ns", limit=2, cursor=cursor2)
    assert [a.actor_id for a in page3] == ["a4"]
    assert cursor3 is None
    assert [a.actor_id for a in store.list("ns2")[0]] == ["other"]


@pytest.mark.parametrize(
    ("initial", "reason", "kwargs", "written", "final_code"),
    [
        pytest.param(None, NoCapacity(), {"only_if_empty": True}, True, "no_capacity", id="set"),
        pytest.param(
            RunnerNoResponse(runner_id="r"),
            NoCapacity(),
            {"only_if_empty": True},
            False,
            "runner_no_response",
            id="never_masks_runner_failure",
        ),
        pytest.param(
            NoCapacity(), None, {"only_if_code": "no_capacity"}, True, None, id="clear_own"
        ),
        pytest.param(
            RunnerNoResponse(runner_id="r"),
            None,
            {"only_if_code": "no_capacity"},
            False,
            "runner_no_response",
            id="clear_keeps_other",
        ),
        pytest.param(None, None, {"only_if_code": "no_capacity"}, False, None, id="clear_empty"),
        pytest.param(
            NoCapacity(),
            RunnerNoResponse(runner_id="r"),
            {},
            True,
            "runner_no_response",
            id="overwrite",
        ),
        pytest.param(
            None,
            OtherFailureReason(data={"code": "future", "x": 1}),
            {},
            True,
            "future",
            id="unknown_code_kept",
        ),
    ],
)
def test_set_failure_reason(
    store: ActorStore,
    initial: Any,
    reason: Any,
    kwargs: dict[str, Any],
    written: bool,
    final_code: str | None,
) -> None:
    store.create(actor(failure_reason=initial, state={"s": 1}))
    assert store.set_failure_reason("a1", reason, **kwargs) is written
    got = store.get("a1")
    assert got is not None
    assert (got.failure_reason.code if got.failure_reason else None) == final_code
    assert got.state_version == 0  # never bumps the version
    assert got.state == {"s": 1}


def test_set_failure_reason_on_missing_actor_is_false(store: ActorStore) -> None:
    assert store.set_failure_reason("ghost", NoCapacity()) is False


def test_append_errors_caps_and_keeps_version(store: ActorStore) -> None:
    store.create(actor(extra={"keep": 1}))
    store.append_errors("a1", [event(0), event(1)], cap=3)
    store.append_errors("a1", [event(2), event(3)], cap=3)
    got = store.get("a1")
    assert got is not None
    events, dropped = read_errors(got.extra)
    assert [e.context["error"]["status_code"] for e in events] == [501, 502, 503]  # type: ignore[index,call-overload]
    assert dropped == 1
    assert got.extra["keep"] == 1
    assert got.state_version == 0


def test_times_come_from_the_clock(store: ActorStore, clock: FakeClock) -> None:
    created = store.create(actor())
    assert created.created_at == created.updated_at == T0
    clock.advance(5)
    store.set_status("a1", "stopped")
    got = store.get("a1")
    assert got is not None and got.created_at == T0
    assert got.updated_at == T0 + timedelta(seconds=5)


def test_append_errors_backs_off_when_another_writer_came_first(
    store: DynamoDBActorStore, clock: FakeClock
) -> None:
    store.create(actor())
    read = store._get
    raced: list[bool] = []

    def read_then_race(key: dict[str, Any]) -> dict[str, Any] | None:
        item = read(key)
        if not raced:  # another writer appends between our read and our conditional write
            raced.append(True)
            store.append_errors("a1", [event(0)], cap=10)
        return item

    store._get = read_then_race  # type: ignore[method-assign]
    store.append_errors("a1", [event(1)], cap=10)
    got = store.get("a1")
    assert got is not None
    events, _ = read_errors(got.extra)
    assert [e.context["error"]["status_code"] for e in events] == [500, 501]  # type: ignore[index,call-overload]
    assert clock.sleeps == [APPEND_BASE_S]  # one backoff (rand=1: its full first step)


def test_append_errors_on_missing_actor_is_silent(store: ActorStore) -> None:
    store.append_errors("ghost", [event(0)], cap=3)
    assert store.get("ghost") is None


def test_set_status_and_last_actor_error(store: ActorStore) -> None:
    store.create(actor())
    err = ActorFailed(error_code="boom", message="m")
    store.set_status("a1", "stopped", last_actor_error=err)
    got = store.get("a1")
    assert got is not None and got.status == "stopped" and got.last_actor_error == err
    store.set_last_actor_error("a1", None)
    got = store.get("a1")
    assert got is not None and got.last_actor_error is None and got.state_version == 0


def test_in_memory_store_refused_in_lambda() -> None:
    with pytest.raises(DurableStoreRequiredError) as info:
        InMemoryActorStore(in_lambda=True)
    assert info.value.code == "durable_store_required:actor_store"


def test_get_many_returns_the_existing_ones(store: ActorStore) -> None:
    for i in range(3):
        store.create(actor(f"a{i}", state=i))
    got = store.get_many(["a0", "a2", "ghost", "a0"])
    assert sorted(got) == ["a0", "a2"]
    assert got["a2"].state == 2
    assert store.get_many([]) == {}


# --- the facts of the actor error rule, and the lifecycle ------------------------------------


def test_start_error_and_clear_on_init(store: ActorStore) -> None:
    store.create(actor())
    store.set_start_error("a1", ServerlessHttpError(status_code=503, body="x"))
    store.set_failure_reason("a1", NoCapacity())
    store.set_last_actor_error("a1", ActorFailed(error_code="boom"))
    got = store.get("a1")
    assert got is not None and got.start_error == ServerlessHttpError(status_code=503, body="x")
    store.clear_on_init("a1")
    cleared = store.get("a1")
    assert cleared is not None
    assert (cleared.start_error, cleared.failure_reason, cleared.last_actor_error) == (
        None,
        None,
        None,
    )
    store.set_start_error("nope", ServerlessHttpError(status_code=503))  # no actor: no item
    store.clear_on_init("nope")
    assert store.get("nope") is None


def test_stop_error_kept_until_resume(store: ActorStore) -> None:
    store.create(actor())
    assert store.resume("a1") is False  # not stopped
    failed = ActorFailed(error_code="boom", message="m")
    store.set_status("a1", "stopped", last_actor_error=failed, stop_error=failed)
    got = store.get("a1")
    assert got is not None and (got.status, got.stop_error) == ("stopped", failed)
    assert store.resume("a1") is True
    resumed = store.get("a1")
    assert resumed is not None and (resumed.status, resumed.stop_error) == ("active", None)
    assert resumed.last_actor_error == failed  # history stays until a later init
    assert store.resume("nope") is False


def test_delete(store: ActorStore) -> None:
    store.create(actor())
    assert store.delete("a1") is True
    assert store.get("a1") is None
    assert store.delete("a1") is False


def test_known_error_with_a_newer_field_round_trips(store: ActorStore) -> None:
    from core.errors import decode_failure_reason, decode_pool_error

    newer = decode_pool_error(
        {"code": "serverless_http_error", "status_code": 503, "body": "", "retry_after_s": 3}
    )
    store.create(actor(failure_reason=decode_failure_reason({"code": "no_capacity", "w": 1})))
    store.set_start_error("a1", newer)
    got = store.get("a1")
    assert got is not None and got.start_error is not None
    assert got.start_error.to_json() == newer.to_json()
    assert got.failure_reason is not None
    assert got.failure_reason.to_json() == {"code": "no_capacity", "w": 1}


def test_undecodable_stored_error_is_isolated_and_marked(store: ActorStore) -> None:
    from adapters.dynamodb.actors import actor_from_item, actor_to_item

    item = actor_to_item(actor())
    item["last_actor_error"] = {"S": '{"code": "actor_failed", "error_code": 7}'}
    item["stop_error"] = {"S": '{"code": 5}'}
    record = actor_from_item(item)
    assert record.last_actor_error is None and record.stop_error is None
    assert isinstance(record.failure_reason, OtherFailureReason)
    assert record.failure_reason.code == "record_undecodable"
