"""One contract suite for every RunnerConfigStore: DynamoDB (moto server) and in-memory."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest

from adapters import settings as settings_mod
from adapters.dynamodb.runner_configs import DynamoDBRunnerConfigStore, ItemTooLargeError
from adapters.memory.runner_configs import InMemoryRunnerConfigStore
from core.exceptions import DurableStoreRequiredError
from core.models import ErrorPolicy, PoolKey, RunnerConfig
from core.ports import RunnerConfigStore
from tests.helpers.contract import BACKENDS, store_for


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> RunnerConfigStore:
    memory = partial(InMemoryRunnerConfigStore, in_lambda=False)
    return store_for(request, "RunnerConfigsTable", DynamoDBRunnerConfigStore, memory)


def make(name: str = "echo", namespace: str = "ns", **kw: Any) -> RunnerConfig:
    return RunnerConfig(
        namespace=namespace, runner_name=name, url="https://runner.example.com/x", **kw
    )


def test_get_missing_is_none(store: RunnerConfigStore) -> None:
    assert store.get(PoolKey(namespace="ns", runner_name="nope")) is None


def test_put_then_get_round_trips_every_field(store: RunnerConfigStore) -> None:
    config = make(
        headers={"authorization": "Bearer s3cret", "x-api-key": "k"},
        request_lifespan=120,
        slots_per_runner=4,
        min_runners=1,
        max_runners=7,
        runners_margin=2,
        allow_private_network=True,
        error_policy=ErrorPolicy(on_actor="stop", max_attempts=3, backoff_base_s=0.5),
        updated_at=datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
    )
    store.put(config)
    got = store.get(config.pool)
    assert got == config
    assert got is not None
    assert got.header_values() == {"authorization": "Bearer s3cret", "x-api-key": "k"}
    assert got.error_policy.backoff_base_s == 0.5


def test_extreme_floats_round_trip(store: RunnerConfigStore) -> None:
    config = make(error_policy=ErrorPolicy(backoff_base_s=5e-324, backoff_max_s=43_199.999999))
    store.put(config)
    assert store.get(config.pool) == config


def test_put_replaces(store: RunnerConfigStore) -> None:
    store.put(make(max_runners=2))
    store.put(make(max_runners=9, headers={"a": "b"}))
    got = store.get(PoolKey(namespace="ns", runner_name="echo"))
    assert got is not None
    assert got.max_runners == 9
    assert got.header_values() == {"a": "b"}


def test_delete_reports_whether_it_existed(store: RunnerConfigStore) -> None:
    pool = PoolKey(namespace="ns", runner_name="echo")
    assert store.delete(pool) is False
    store.put(make())
    assert store.delete(pool) is True
    assert store.get(pool) is None
    assert store.delete(pool) is False


def test_list_is_per_namespace_and_ordered(store: RunnerConfigStore) -> None:
    for name in ["b", "a", "c"]:
        store.put(make(name))
    store.put(make("a", namespace="other"))
    assert [c.runner_name for c in store.list("ns")] == ["a", "b", "c"]
    assert [c.runner_name for c in store.list("other")] == ["a"]
    assert store.list("empty") == []


def test_list_all_spans_namespaces(store: RunnerConfigStore) -> None:
    store.put(make("b", namespace="z"))
    store.put(make("a", namespace="ns"))
    store.put(make("c", namespace="ns"))
    assert [c.pool.id for c in store.list_all()] == ["ns/a", "ns/c", "z/b"]


def test_dynamodb_item_keeps_header_values_and_the_one_time_format(
    dynamodb: Any, tables: dict[str, str]
) -> None:
    store = DynamoDBRunnerConfigStore(tables["RunnerConfigsTable"], client=dynamodb)
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.put(make(headers={"authorization": "Bearer s3cret"}, updated_at=at))
    key = {"namespace": {"S": "ns"}, "runner_name": {"S": "echo"}}
    item = dynamodb.get_item(TableName=tables["RunnerConfigsTable"], Key=key)["Item"]
    assert item["headers"] == {"M": {"authorization": {"S": "Bearer s3cret"}}}
    assert item["updated_at"] == {"S": "2026-01-02T03:04:05.000000Z"}  # items.format_time
    # Items written before it (pydantic's own ISO text) still read back as the same instant.
    item["updated_at"] = {"S": "2026-01-02T03:04:05Z"}
    dynamodb.put_item(TableName=tables["RunnerConfigsTable"], Item=item)
    got = store.get(PoolKey(namespace="ns", runner_name="echo"))
    assert got is not None and got.updated_at == at


def test_dynamodb_list_follows_pages(dynamodb: Any, tables: dict[str, str]) -> None:
    store = DynamoDBRunnerConfigStore(tables["RunnerConfigsTable"], client=dynamodb)
    big = "x" * 300_000  # ~300 KB per item: a 1 MB query page holds only a few
    names = [f"r{i:02d}" for i in range(5)]
    for name in names:
        store.put(make(name, headers={"big": big}))
    assert [c.runner_name for c in store.list("ns")] == names


@pytest.mark.parametrize(
    ("in_lambda", "raises"),
    [pytest.param(True, True, id="in_lambda"), pytest.param(False, False, id="outside")],
)
def test_in_memory_refused_inside_lambda(in_lambda: bool, raises: bool) -> None:
    if raises:
        with pytest.raises(DurableStoreRequiredError) as info:
            InMemoryRunnerConfigStore(in_lambda=in_lambda)
        assert info.value.code == "durable_store_required:runner_config_store"
    else:
        InMemoryRunnerConfigStore(in_lambda=in_lambda)


def test_in_memory_reads_lambda_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "runner-kit-dev-api")
    settings_mod.get_settings.cache_clear()
    try:
        with pytest.raises(DurableStoreRequiredError):
            InMemoryRunnerConfigStore()
    finally:
        monkeypatch.undo()
        settings_mod.get_settings.cache_clear()


def test_put_if_compares_the_revision_it_read(store: RunnerConfigStore) -> None:
    pool = PoolKey(namespace="ns", runner_name="rev")
    assert store.get_with_revision(pool) is None
    assert store.put_if(make("rev", max_runners=2), None)  # None: only if there is none
    assert not store.put_if(make("rev", max_runners=3), None)
    found = store.get_with_revision(pool)
    assert found is not None
    config, revision = found
    assert config.max_runners == 2 and revision
    store.put(make("rev", max_runners=4))  # an unconditional write moves the revision too
    assert not store.put_if(make("rev", max_runners=5), revision)
    found = store.get_with_revision(pool)
    assert found is not None and found[0].max_runners == 4
    assert store.put_if(make("rev", max_runners=6), found[1])
    assert store.get(pool) == make("rev", max_runners=6)


def test_an_item_over_400_kb_is_refused_before_the_write(store: RunnerConfigStore) -> None:
    headers = {f"x-h{i}": "v" * 8192 for i in range(50)}
    with pytest.raises(ItemTooLargeError) as info:
        store.put(make("big", headers=headers))
    assert info.value.size > info.value.limit == 400 * 1024
    assert store.get(PoolKey(namespace="ns", runner_name="big")) is None
