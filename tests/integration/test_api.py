"""The API Lambda end to end: SAM-shaped proxy events into ``lambda_handler``, DynamoDB and SQS on
the moto server, the real tracker; the actor host and the dev runner for the gateway's real flow.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from adapters.dynamodb.actors import DynamoDBActorStore
from adapters.settings import Settings
from core.errors import NoCapacity, ServerlessHttpError
from core.models import PoolKey
from core.times import parse_time
from infra.dev_runner import DevRunner
from tests.helpers.api_stack import _clear_caches, call, create_actor, put_config, tracker
from tests.helpers.api_stack import dev_runner as dev_runner  # a fixture
from tests.helpers.api_stack import stack as stack  # a fixture
from tests.helpers.apigw import response_header, response_json

pytestmark = pytest.mark.integration

SECRET = "Bearer top-s3cret"
POOL = PoolKey(namespace="ns", runner_name="echo")
HTTP_503 = ServerlessHttpError(status_code=503, body="down")


def error_code(answer: dict[str, Any]) -> str:
    return str(response_json(answer)["code"])


# --- runner configs: validation and redaction -------------------------------------------------


def test_runner_config_round_trip_redacts_and_keeps_the_secret(
    stack: Settings, dynamodb: Any
) -> None:
    put = put_config(headers={"authorization": SECRET})
    assert put["statusCode"] == 200, put
    answers = [
        put,
        call("GET", "/runner-configs/ns/echo"),
        call("GET", "/runner-configs", query={"namespace": "ns"}),
    ]
    for answer in answers:
        assert answer["statusCode"] == 200
        assert SECRET not in json.dumps(answer)
        assert "***" in answer["body"]
    item = dynamodb.get_item(
        TableName=stack.runner_configs_table,
        Key={"namespace": {"S": "ns"}, "runner_name": {"S": "echo"}},
    )["Item"]
    assert item["headers"]["M"]["authorization"]["S"] == SECRET


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(
            {"headers": {"x-runner-pool": "x"}}, "runner_config_header_invalid", id="reserved"
        ),
        pytest.param({"min_runners": 3, "max_runners": 1}, "runner_config_invalid", id="bounds"),
        pytest.param({"url": "http://10.0.0.1"}, "runner_config_url_blocked", id="private"),
        pytest.param(
            {"url": "http://169.254.169.254", "allow_private_network": True},
            "runner_config_url_blocked",
            id="metadata",
        ),
        pytest.param({"url": "gopher://93.184.216.34"}, "runner_config_invalid", id="scheme"),
    ],
)
def test_runner_config_validation(stack: Settings, body: dict[str, Any], code: str) -> None:
    answer = put_config(**{"url": "https://93.184.216.34", **body})
    assert answer["statusCode"] == 422
    assert error_code(answer) == code
    assert call("GET", "/runner-configs/ns/echo")["statusCode"] == 404


# --- enrichment ---------------------------------------------------------------------------------


def test_enrichment_on_and_off(stack: Settings) -> None:
    put_config()
    create_actor("a1")
    create_actor("a2")
    DynamoDBActorStore(stack.actors_table).set_failure_reason("a1", NoCapacity())

    def errors() -> dict[str, Any]:
        actors = response_json(call("GET", "/actors", query={"namespace": "ns"}))["actors"]
        return {a["actor_id"]: a.get("error") for a in actors}

    assert errors() == {"a1": {"code": "no_capacity"}, "a2": None}
    t = tracker()
    t.report_error(POOL, HTTP_503)
    enriched = errors()["a1"]
    assert enriched is not None
    assert enriched["code"] == "pool_error"
    assert enriched["error"] == HTTP_503.to_json()
    assert enriched["count"] == 1
    assert errors()["a2"] is None
    single = response_json(call("GET", "/actors/a1"))
    assert single["error"]["code"] == "pool_error"
    listed = response_json(call("GET", "/runner-configs", query={"namespace": "ns"}))
    assert listed["runner_configs"][0]["pool_error"]["error"]["status_code"] == 503
    for _ in range(3):
        t.report_success(POOL)
    assert errors()["a1"] == {"code": "no_capacity"}
    assert "pool_error" not in response_json(call("GET", "/runner-configs/ns/echo"))


@pytest.mark.parametrize("cursor", ["%", "_w", "Lw", "x" * 2000])
def test_bad_cursors_are_422(stack: Settings, cursor: str) -> None:
    answer = call("GET", "/actors", query={"namespace": "ns", "cursor": cursor})
    assert answer["statusCode"] == 422
    assert error_code(answer) == "invalid_request"


def test_actor_pages_follow_the_cursor(stack: Settings) -> None:
    put_config()
    for i in range(5):
        create_actor(f"a{i}")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = {"namespace": "ns", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = response_json(call("GET", "/actors", query=query))
        seen += [a["actor_id"] for a in page["actors"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"a{i}" for i in range(5)]


# --- messages and the gateway -------------------------------------------------------------------


def test_post_message_queues_the_envelope(stack: Settings, sqs: Any) -> None:
    put_config()
    create_actor()
    answer = call("POST", "/actors/a1/messages", body={"input": [1, 2]})
    assert answer["statusCode"] == 202
    message_id = response_json(answer)["message_id"]
    got = sqs.receive_message(
        QueueUrl=stack.actor_messages_queue_url,
        AttributeNames=["MessageGroupId"],
        WaitTimeSeconds=1,
    )["Messages"]
    assert json.loads(got[0]["Body"]) == {"v": 1, "actor_id": "a1", "message_id": message_id}
    assert got[0]["Attributes"]["MessageGroupId"] == "a1"
    again = call("GET", f"/actors/a1/messages/{message_id}")
    assert response_json(again)["input"] == [1, 2]


def test_a_message_the_api_discards_expires_like_the_hosts(stack: Settings, dynamodb: Any) -> None:
    # DELETE /actors ends its pending messages as discarded: final records, so they get the
    # same TTL (MessageRetentionDays) as the ones the actor host makes final.
    put_config()
    create_actor()
    message_id = response_json(call("POST", "/actors/a1/messages", body={"input": 1}))["message_id"]
    assert call("DELETE", "/actors/a1")["statusCode"] == 204
    item = dynamodb.get_item(
        TableName=stack.messages_table,
        Key={"actor_id": {"S": "a1"}, "message_id": {"S": message_id}},
    )["Item"]
    assert item["status"]["S"] == "discarded"
    finished = parse_time(item["finished_at"]["S"]).timestamp()
    expected = finished + stack.message_retention_days * 86_400
    assert abs(float(item["expires_at"]["N"]) - expected) < 1


def test_gateway_fails_fast_on_an_active_pool_error(
    stack: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    put_config()
    create_actor()
    tracker().report_error(POOL, HTTP_503)
    answer = call("POST", "/actors/a1/messages", body={"input": 1}, query={"wait": "true"})
    assert answer["statusCode"] == 503
    body = response_json(answer)
    assert body["group"] == "guard"
    assert body["code"] == "actor_runner_failed"
    assert body["metadata"]["actor_id"] == "a1"
    assert body["metadata"]["pool_error"]["error"] == HTTP_503.to_json()
    assert response_header(answer, "Retry-After") == str(stack.gateway_retry_after_s)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(m.get("GatewayRunnerFailed") == [1.0] and m["service"] == "api" for m in emf)


def test_gateway_times_out(stack: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_READY_TIMEOUT_S", "1.5")
    monkeypatch.setenv("INIT_TIMEOUT_S", "1")
    _clear_caches()
    put_config()
    create_actor()
    answer = call("POST", "/actors/a1/messages", body={"input": 1}, query={"wait": "true"})
    assert answer["statusCode"] == 503
    body = response_json(answer)
    assert body["code"] == "actor_ready_timeout"
    assert body["metadata"]["waited_s"] >= 1.5


class HostPump:
    """Feeds the FIFO queue to ``functions.actor_host.app.lambda_handler`` through the local
    stack's event source mapping (``infra.local.host_loop.SqsPoller``: the template's batch size,
    partial batch failures honoured), on a thread."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        from infra.local.host_loop import SqsPoller
        from infra.local.lambda_runtime import ACTOR_HOST_FUNCTION
        from infra.template import function_specs

        self.stop = threading.Event()
        self.poller = SqsPoller(
            function_specs()[ACTOR_HOST_FUNCTION],
            queue_url,
            sqs,
            self._invoke,
            stop=self.stop,
            log=print,
        )
        self.thread = threading.Thread(target=self.poller.run, daemon=True)

    def __enter__(self) -> HostPump:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    @staticmethod
    def _invoke(event: dict[str, Any]) -> Any:
        from functions.actor_host.app import lambda_handler
        from infra.local.lambda_runtime import LambdaContext

        context = LambdaContext(
            function_name="runner-kit-test-actor-host", memory_limit_in_mb=512, timeout_s=300
        )
        return lambda_handler(event, context)


def test_gateway_returns_the_result_from_the_actor_host(
    stack: Settings, sqs: Any, dev_runner: DevRunner
) -> None:
    assert (
        put_config(dev_runner.url, allow_private_network=True, request_lifespan=20)["statusCode"]
        == 200
    )
    create_actor()
    with HostPump(sqs, stack.actor_messages_queue_url):
        answer = call(
            "POST", "/actors/a1/messages", body={"input": {"x": 1}}, query={"wait": "true"}
        )
    assert answer["statusCode"] == 200, answer
    body = response_json(answer)
    assert body["status"] == "succeeded"
    assert body["runner_id"]
    assert dev_runner.start_requests >= 1


def test_gateway_fails_fast_when_the_host_finds_the_endpoint_broken(
    stack: Settings, sqs: Any, dev_runner: DevRunner
) -> None:
    put_config(dev_runner.url, allow_private_network=True, request_lifespan=20)
    create_actor()
    dev_runner.set_fault("http_503")
    with HostPump(sqs, stack.actor_messages_queue_url):
        answer = call("POST", "/actors/a1/messages", body={"input": 1}, query={"wait": "true"})
    assert answer["statusCode"] == 503, answer
    body = response_json(answer)
    assert body["code"] == "actor_runner_failed"
    pool_error = body["metadata"]["pool_error"]
    assert pool_error["error"]["code"] == "serverless_http_error"
    assert pool_error["error"]["status_code"] == 503
    assert response_header(answer, "Retry-After")
