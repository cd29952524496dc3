"""What only the DynamoDB store has: item layout, one request per transition, AWS error codes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from adapters.dynamodb.pool_errors import DynamoDBPoolErrorStore
from adapters.tracker import PoolErrorTracker
from core.errors import ServerlessHttpError
from core.exceptions import StoreCommitFailedError, StoreReadFailedError
from core.hysteresis import ActiveError, Failure, HysteresisPolicy, PoolState, Success
from core.models import PoolKey
from tests.helpers.clock import T0, FakeClock

POLICY = HysteresisPolicy()
POOL = PoolKey(namespace="ns", runner_name="echo")
E503 = ServerlessHttpError(status_code=503, body="down")


def count_requests(client: Any) -> Counter[str]:
    """Count every request the client sends, by operation (botocore event hook)."""
    calls: Counter[str] = Counter()

    def hook(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call.dynamodb.*", hook)
    return calls


@pytest.fixture
def store(tables: dict[str, str], dynamodb: Any) -> DynamoDBPoolErrorStore:
    return DynamoDBPoolErrorStore(tables["PoolErrorsTable"], client=dynamodb)


def raw_item(store: DynamoDBPoolErrorStore, pool: PoolKey = POOL) -> dict[str, Any]:
    item: dict[str, Any] = store.client.get_item(
        TableName=store.table_name, Key={"pool_id": {"S": pool.id}}, ConsistentRead=True
    )["Item"]
    return item


def test_item_layout_through_an_episode(store: DynamoDBPoolErrorStore) -> None:
    store.apply(POOL, Failure(E503), now=T0, policy=POLICY)
    assert raw_item(store) == {
        "pool_id": {"S": "ns/echo"},
        "version": {"N": "1"},
        "successes": {"N": "0"},
        "threshold": {"N": "3"},
        "error": {"S": '{"code":"serverless_http_error","status_code":503,"body":"down"}'},
        "error_code": {"S": "serverless_http_error"},
        "first_seen": {"S": "2026-11-23T12:00:00.000000Z"},
        "last_seen": {"S": "2026-11-23T12:00:00.000000Z"},
        "count": {"N": "1"},
        "updated_at": {"S": "2026-11-23T12:00:00.000000Z"},
    }
    for i in range(3):
        store.apply(POOL, Success(), now=T0 + timedelta(seconds=i + 1), policy=POLICY)
    item = raw_item(store)
    # Cleared by the counter reaching the threshold; the last episode stays for the record.
    assert item["successes"] == item["threshold"] == {"N": "3"}
    assert item["version"] == {"N": "4"}
    assert item["count"] == {"N": "1"}
    assert store.get(POOL) == PoolState(None, 0, 4)


@pytest.mark.parametrize(
    "trace", ["E", "EEE", "ESSS", "ESSSE"], ids=["open", "burst", "recover", "reopen"]
)
def test_one_update_item_per_transition(
    store: DynamoDBPoolErrorStore, dynamodb: Any, trace: str
) -> None:
    calls = count_requests(dynamodb)
    state = PoolState()
    for i, ch in enumerate(trace):
        outcome = Failure(E503) if ch == "E" else Success()
        result = store.apply(
            POOL, outcome, now=T0 + timedelta(seconds=i), policy=POLICY, hint=state
        )
        assert result.written
        assert result.state.version == state.version + 1
        state = result.state
    assert calls == {"UpdateItem": len(trace)}


def test_updates_ask_for_the_post_image_and_the_conflict_image(
    store: DynamoDBPoolErrorStore, dynamodb: Any
) -> None:
    seen: list[dict[str, Any]] = []
    dynamodb.meta.events.register(
        "provide-client-params.dynamodb.UpdateItem", lambda params, **_: seen.append(params)
    )
    store.apply(POOL, Failure(E503), now=T0, policy=POLICY)
    store.apply(POOL, Success(), now=T0, policy=POLICY)
    assert [p["ReturnValues"] for p in seen] == ["ALL_NEW", "ALL_NEW"]
    assert [p["ReturnValuesOnConditionCheckFailure"] for p in seen] == ["ALL_OLD", "ALL_OLD"]
    assert all("ConditionExpression" in p for p in seen)


def test_wrong_branch_costs_one_more_request_and_stays_exact(
    store: DynamoDBPoolErrorStore, dynamodb: Any
) -> None:
    store.apply(POOL, Failure(E503), now=T0, policy=POLICY)
    calls = count_requests(dynamodb)
    # The caller believes the pool healthy: "open" fails, DynamoDB returns the item, "continue".
    result = store.apply(POOL, Failure(E503), now=T0 + timedelta(1), policy=POLICY, hint=None)
    assert calls == {"UpdateItem": 2}
    assert result.state == PoolState(ActiveError(E503, T0, T0 + timedelta(1), 2), 0, 2)


def test_success_while_healthy_is_one_failed_condition(
    store: DynamoDBPoolErrorStore, dynamodb: Any
) -> None:
    calls = count_requests(dynamodb)
    result = store.apply(POOL, Success(), now=T0, policy=POLICY)
    assert not result.written
    assert calls == {"UpdateItem": 1}  # the tracker avoids even this one with its cache
    assert "Item" not in dynamodb.get_item(
        TableName=store.table_name, Key={"pool_id": {"S": POOL.id}}
    )


def test_get_many_is_one_batch_per_100_keys(store: DynamoDBPoolErrorStore, dynamodb: Any) -> None:
    pools = [PoolKey(namespace="ns", runner_name=f"r{i}") for i in range(250)]
    store.apply(pools[7], Failure(E503), now=T0, policy=POLICY)
    calls = count_requests(dynamodb)
    got = store.get_many(pools)
    assert calls == {"BatchGetItem": 3}
    assert [p for p, s in got.items() if not s.healthy] == [pools[7]]


def test_tracker_end_to_end_request_counts(store: DynamoDBPoolErrorStore, dynamodb: Any) -> None:
    tracker = PoolErrorTracker(store, clock=FakeClock())  # time stands still: views stay fresh
    calls = count_requests(dynamodb)
    tracker.report_error(POOL, E503)  # 1 write, no read
    for _ in range(3):
        tracker.report_success(POOL)  # 3 writes (the third clears)
    for _ in range(50):
        tracker.report_success(POOL)  # healthy, view fresh: nothing
    assert tracker.active_error(POOL) is None
    assert calls == {"UpdateItem": 4}


# --- AWS errors are classified by Error.Code and never surface as bare botocore errors ---------


@pytest.fixture
def missing_table(dynamodb: Any) -> DynamoDBPoolErrorStore:
    return DynamoDBPoolErrorStore("no-such-table", client=dynamodb)


def test_write_to_missing_table_is_store_commit_failed(
    missing_table: DynamoDBPoolErrorStore,
) -> None:
    with pytest.raises(StoreCommitFailedError, match="ResourceNotFoundException") as info:
        missing_table.apply(POOL, Failure(E503), now=T0, policy=POLICY)
    assert info.value.code == "store_commit_failed"
    assert type(info.value.__cause__).__name__ == "ResourceNotFoundException"


@pytest.mark.parametrize("many", [pytest.param(False, id="get"), pytest.param(True, id="get_many")])
def test_read_of_missing_table_is_store_read_failed(
    missing_table: DynamoDBPoolErrorStore, many: bool
) -> None:
    read = (lambda: missing_table.get_many([POOL])) if many else (lambda: missing_table.get(POOL))
    with pytest.raises(StoreReadFailedError, match="ResourceNotFoundException") as info:
        read()
    assert info.value.code == "store_read_failed"


def _stubbed(clock: FakeClock | None = None) -> tuple[DynamoDBPoolErrorStore, Stubber]:
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # a stubbed client sends nothing
    )
    sleep = (clock or FakeClock()).sleep
    store = DynamoDBPoolErrorStore(
        "t", client=client, max_attempts=4, sleep=sleep, rand=lambda: 1.0
    )
    return store, Stubber(client)


def _item(
    successes: int, threshold: int = 3, *, pool: PoolKey = POOL, **attrs: dict[str, str]
) -> dict[str, Any]:
    """A stored item with an active error (``successes < threshold``), ``attrs`` replaced."""
    return {
        "pool_id": {"S": pool.id},
        "version": {"N": "9"},
        "successes": {"N": str(successes)},
        "threshold": {"N": str(threshold)},
        "error": {"S": '{"code":"internal_error","message":"x"}'},
        "error_code": {"S": "internal_error"},
        "first_seen": {"S": "2026-11-23T12:00:00Z"},
        "last_seen": {"S": "2026-11-23T12:00:00Z"},
        "count": {"N": "1"},
        **attrs,
    }


def test_endless_conflicts_end_in_store_commit_failed() -> None:
    store, stub = _stubbed()
    for i in range(4):  # the item flips between healthy and active on every look
        stub.add_client_error(
            "update_item",
            service_error_code="ConditionalCheckFailedException",
            http_status_code=400,
            modeled_fields={"Item": _item(successes=3 if i % 2 else 0)},
        )
    with stub, pytest.raises(StoreCommitFailedError, match="4 conflicting attempts"):
        store.apply(POOL, Failure(E503), now=T0, policy=POLICY)


def test_throttling_is_wrapped_with_its_code() -> None:
    store, stub = _stubbed()
    stub.add_client_error(
        "update_item", service_error_code="ProvisionedThroughputExceededException"
    )
    with stub, pytest.raises(StoreCommitFailedError, match="ProvisionedThroughputExceeded"):
        store.apply(POOL, Success(), now=T0, policy=POLICY)


def test_unprocessed_keys_are_retried() -> None:
    store, stub = _stubbed()
    key = {"pool_id": {"S": POOL.id}}
    stub.add_response(
        "batch_get_item",
        {"Responses": {"t": []}, "UnprocessedKeys": {"t": {"Keys": [key]}}},
    )
    stub.add_response("batch_get_item", {"Responses": {"t": [_item(successes=1)]}})
    with stub:
        got = store.get_many([POOL])
    assert got[POOL].consecutive_successes == 1
    assert got[POOL].version == 9


def test_unprocessed_keys_forever_end_in_store_read_failed() -> None:
    clock = FakeClock()
    store, stub = _stubbed(clock)
    key = {"pool_id": {"S": POOL.id}}
    for _ in range(4):
        stub.add_response(
            "batch_get_item",
            {"Responses": {"t": []}, "UnprocessedKeys": {"t": {"Keys": [key]}}},
        )
    with stub, pytest.raises(StoreReadFailedError, match="unprocessed"):
        store.get_many([POOL])
    # core.policy.backoff_s at its ceiling (rand 1.0): 25 ms doubling, none after the last try.
    assert clock.sleeps == [0.025, 0.05, 0.1]


# --- records from other versions -----------------------------------------------------------------

T = datetime(2026, 1, 2, tzinfo=UTC)


def test_stored_known_error_with_a_newer_field_round_trips_and_isolates_nothing(
    dynamodb: Any, tables: dict[str, str]
) -> None:
    store = DynamoDBPoolErrorStore(tables["PoolErrorsTable"], client=dynamodb)
    pool = PoolKey(namespace="ns", runner_name="newer")
    newer = '{"code":"serverless_http_error","status_code":503,"body":"b","retry_after_s":3}'
    dynamodb.put_item(
        TableName=tables["PoolErrorsTable"],
        Item=_item(
            0,
            pool=pool,
            error={"S": newer},
            error_code={"S": "serverless_http_error"},
            count={"N": "2"},
            retry_after_s={"N": "3"},  # an attribute a newer build added
        ),
    )
    state = store.get(pool)
    assert state.active_error is not None
    assert json.dumps(state.active_error.error.to_json(), separators=(",", ":")) == newer
    # A continued episode writes the error back unchanged.
    again = store.apply(
        pool,
        Failure(state.active_error.error),
        now=state.active_error.last_seen,
        policy=HysteresisPolicy(),
        hint=state,
    ).state
    assert again.active_error is not None and again.active_error.count == 3
    raw = dynamodb.get_item(TableName=tables["PoolErrorsTable"], Key={"pool_id": {"S": pool.id}})
    assert raw["Item"]["error"]["S"] == newer


def test_undecodable_record_is_isolated_per_pool(dynamodb: Any, tables: dict[str, str]) -> None:
    from core.errors import OtherPoolError

    store = DynamoDBPoolErrorStore(tables["PoolErrorsTable"], client=dynamodb)
    bad = PoolKey(namespace="ns", runner_name="bad")
    good = PoolKey(namespace="ns", runner_name="good")
    store.apply(
        good, Failure(ServerlessHttpError(status_code=500)), now=T, policy=HysteresisPolicy()
    )
    dynamodb.put_item(
        TableName=tables["PoolErrorsTable"],
        Item=_item(0, pool=bad, error={"S": '{"code": 7}'}, last_seen={"S": "not a time"}),
    )
    states = store.get_many([bad, good])
    assert states[good].active_error is not None
    assert states[good].active_error.error == ServerlessHttpError(status_code=500)
    marked = states[bad].active_error
    assert marked is not None and isinstance(marked.error, OtherPoolError)
    assert marked.error.code == "record_undecodable"
    assert marked.error.to_json()["raw"] == '{"code": 7}'
    # A real outcome replaces it.
    store.apply(
        bad, Failure(ServerlessHttpError(status_code=502)), now=T, policy=HysteresisPolicy()
    )
    fixed = store.get(bad).active_error
    assert fixed is not None and fixed.error == ServerlessHttpError(status_code=502)
