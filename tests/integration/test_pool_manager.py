"""The pool manager Lambda on the moto server against the dev runner endpoint: probe backoff kept
in DynamoDB, a repaired pool cleared after 3 successful probes, warm probes, silent executions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.dynamodb.actors import DynamoDBActorStore
from adapters.dynamodb.messages import DynamoDBMessageStore
from adapters.dynamodb.probes import DynamoDBProbeStore
from adapters.settings import Settings, get_settings
from core.errors import ServerlessHttpError
from core.models import MessageRecord, PoolKey
from infra.dev_runner import DevRunner
from infra.local.lambda_runtime import LambdaContext
from tests.helpers.api_stack import call, create_actor, put_config, tracker
from tests.helpers.api_stack import dev_runner as dev_runner  # a fixture
from tests.helpers.api_stack import stack as stack  # a fixture
from tests.helpers.apigw import response_json

pytestmark = pytest.mark.integration

POOL = PoolKey(namespace="ns", runner_name="echo")


def tick() -> dict[str, Any]:
    from functions.pool_manager.app import lambda_handler

    context = LambdaContext(
        function_name="runner-kit-test-pool-manager", memory_limit_in_mb=512, timeout_s=60
    )
    return lambda_handler({}, context)


def configure(runner: DevRunner, **body: Any) -> None:
    answer = put_config(runner.url, allow_private_network=True, request_lifespan=20, **body)
    assert answer["statusCode"] == 200, answer


def pool_error_of_config() -> Any:
    return response_json(call("GET", "/runner-configs/ns/echo")).get("pool_error")


def test_broken_pool_backs_off_then_clears_after_repair(
    stack: Settings, dev_runner: DevRunner
) -> None:
    configure(dev_runner)
    dev_runner.set_fault("http_503")
    tracker().report_error(POOL, ServerlessHttpError(status_code=503, body="down"))

    first = tick()
    assert first["probed"] == {"ns/echo": [False]}
    assert dev_runner.start_requests == 1
    state = DynamoDBProbeStore(stack.pool_probes_table).get(POOL)
    assert state is not None
    assert state.failures == 1
    assert state.last_error_code == "serverless_http_error"
    assert state.next_probe_at > datetime.now(UTC).timestamp() + 30  # ~60 s backoff

    second = tick()  # not due: a broken endpoint is not hammered every minute
    assert second["not_due"] == ["ns/echo"]
    assert dev_runner.start_requests == 1
    assert pool_error_of_config() is not None

    dev_runner.set_fault(None)  # the user repairs the endpoint...
    configure(dev_runner)  # ...and saves the config, which resets the backoff
    assert DynamoDBProbeStore(stack.pool_probes_table).get(POOL) is None

    third = tick()
    assert third["probed"] == {"ns/echo": [True, True, True]}
    assert third["cleared"] == ["ns/echo"]
    assert third["active_after"] == 0
    assert dev_runner.start_requests == 4
    assert pool_error_of_config() is None


def test_warm_probes_keep_min_runners(stack: Settings, dev_runner: DevRunner) -> None:
    configure(dev_runner, min_runners=2, max_runners=4)
    report = tick()
    assert report["warm"] == {"ns/echo": 2}
    assert dev_runner.start_requests == 2
    probes = [r for r in dev_runner.received if r.body.get("probe") is True]
    assert len(probes) == 2


def test_warm_probes_count_within_max_runners(stack: Settings, dev_runner: DevRunner) -> None:
    from adapters.dynamodb.slots import DynamoDBSlotStore

    configure(dev_runner, min_runners=1, max_runners=1)
    slots = DynamoDBSlotStore(stack.slots_table)
    # An execution holds the pool's only runner slot: a probe now would be a second runner.
    busy = slots.acquire(
        "ns/echo", total=1, owner="execution", lease_s=600, now=datetime.now(UTC).timestamp()
    )
    assert busy is not None
    report = tick()
    assert report["warm"] == {"ns/echo": 0}
    assert report["warm_no_slot"] == {"ns/echo": 1}
    assert dev_runner.start_requests == 0

    slots.release(busy)
    report = tick()
    assert report["warm"] == {"ns/echo": 1}
    assert dev_runner.start_requests == 1
    assert slots.held("ns/echo", now=datetime.now(UTC).timestamp()) == 0  # given back


def test_warm_probe_discovers_a_broken_endpoint(
    stack: Settings, dev_runner: DevRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(dev_runner, min_runners=1)
    dev_runner.set_fault("wrong_content_type")
    report = tick()
    assert report["errors_reported"] == 1
    error = pool_error_of_config()
    assert error is not None
    assert error["error"]["code"] == "serverless_connection_error"
    assert error["error"]["reason"] == "content_type"
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(m.get("ActivePoolErrors") == [1.0] for m in emf)


def test_silent_execution_is_marked_on_the_actor(stack: Settings, dev_runner: DevRunner) -> None:
    configure(dev_runner)
    create_actor("a1")
    messages = DynamoDBMessageStore(stack.messages_table)
    long_ago = datetime.now(UTC) - timedelta(seconds=20 + stack.silent_after_s + 30)
    messages.create(MessageRecord(actor_id="a1", message_id="m1", created_at=long_ago))
    messages.claim("a1", "m1", owner="dead-host", lease_s=3600, now=long_ago)
    assert messages.mark_running("a1", "m1", owner="dead-host", runner_id="r-9", now=long_ago)

    report = tick()
    assert report["silent_marked"] == ["a1/m1"]
    actor = response_json(call("GET", "/actors/a1"))
    assert actor["error"] == {"code": "runner_no_response", "runner_id": "r-9"}
    assert [e["code"] for e in actor["errors"]["events"]] == ["runner_no_response"]
    assert tick()["silent_marked"] == []  # marked once


def test_deps_wire_dynamodb_stores(stack: Settings) -> None:
    from functions.pool_manager.app import deps

    built = deps()
    assert isinstance(built.probes, DynamoDBProbeStore)
    assert built.probes.table_name == get_settings().pool_probes_table
    assert isinstance(built.actors, DynamoDBActorStore)
