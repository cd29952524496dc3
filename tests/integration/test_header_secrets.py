"""Header values referenced in Secrets Manager (moto server): sent, cached with a TTL, never stored.

The API saves the reference; a start through ``StartTarget.from_config`` (what the actor host
and the pool manager use) reads the secret and sends it to a real loopback endpoint.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from adapters import secrets as secrets_mod
from adapters.dynamodb.runner_configs import DynamoDBRunnerConfigStore
from adapters.runner.attempt import StartLimits
from adapters.runner.client import RunnerClient, probe
from adapters.runner.transport import StartTarget
from core.models import PoolKey, RunnerConfig
from infra.moto_server import MotoServer
from tests.helpers.api import make_world
from tests.helpers.apigw import aws_proxy_event, response_json
from tests.helpers.fake_endpoint import QuietHandler, serving

SEEN: list[dict[str, str]] = []
INIT = b"data: " + __import__("base64").b64encode(
    json.dumps({"v": 1, "type": "init", "runner_id": "r1"}).encode()
)


class Endpoint(QuietHandler):
    def do_POST(self) -> None:
        self.read_body()
        SEEN.append(dict(self.headers.items()))
        self.reply(200, "text/event-stream", INIT + b"\n\n")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with serving(Endpoint) as url:
        yield url


@pytest.fixture
def secretsmanager(moto_server: MotoServer) -> Iterator[Any]:
    secrets_mod.reset_cache()  # a provider made before this moto server would point elsewhere
    yield boto3.client("secretsmanager", endpoint_url=moto_server.url, region_name="us-east-1")
    secrets_mod.reset_cache()


def _config(endpoint: str, refs: dict[str, str]) -> RunnerConfig:
    return RunnerConfig(
        namespace="ns",
        runner_name="sm",
        url=endpoint,
        headers={"x-plain": "plain-value"},
        header_secrets=refs,
        allow_private_network=True,
    )


def _probe(config: RunnerConfig) -> Any:
    with RunnerClient(StartLimits(init_timeout_s=5), allow_loopback=True) as client:
        return probe(client, StartTarget.from_config(config))


def test_a_referenced_secret_is_sent_and_cached_with_a_ttl(
    endpoint: str, secretsmanager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets_mod, "SECRET_TTL_S", 1)
    name = f"runner-kit/token-{uuid.uuid4().hex[:6]}"
    arn = secretsmanager.create_secret(Name=name, SecretString="Bearer sm-first\n")["ARN"]
    config = _config(endpoint, {"authorization": arn})
    SEEN.clear()
    assert _probe(config).ok
    assert SEEN[-1]["authorization"] == "Bearer sm-first"  # surrounding whitespace dropped
    assert SEEN[-1]["x-plain"] == "plain-value"

    secretsmanager.put_secret_value(SecretId=arn, SecretString="Bearer sm-rotated")
    assert _probe(config).ok
    assert SEEN[-1]["authorization"] == "Bearer sm-first"  # cached within the TTL
    time.sleep(1.1)  # past the TTL: read again
    assert _probe(config).ok
    assert SEEN[-1]["authorization"] == "Bearer sm-rotated"


def test_a_missing_secret_fails_the_start_naming_header_and_arn(
    endpoint: str, secretsmanager: Any
) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:runner-kit/missing-AbCdEf"
    SEEN.clear()
    result = _probe(_config(endpoint, {"authorization": arn}))
    assert not result.ok
    assert result.error is not None
    data = result.error.to_json()
    assert data["code"] == "internal_error"
    assert "'authorization'" in str(data["message"]) and arn in str(data["message"])
    assert "ResourceNotFoundException" in str(data["message"])
    assert SEEN == []  # nothing was sent


def test_the_api_stores_the_reference_never_the_value(
    endpoint: str, secretsmanager: Any, tables: dict[str, str], dynamodb: Any
) -> None:
    name = f"runner-kit/api-{uuid.uuid4().hex[:6]}"
    arn = secretsmanager.create_secret(Name=name, SecretString="Bearer sm-api-value")["ARN"]
    world = make_world()
    store = DynamoDBRunnerConfigStore(tables["RunnerConfigsTable"], dynamodb)
    world.deps.runner_configs = store
    body = {
        "url": "https://runner.example.com",
        "headers": {"authorization": {"secret_arn": arn}, "x-plain": "v"},
    }
    answer = handle_put(world, body)
    assert answer["statusCode"] == 200, answer
    view = response_json(answer)
    assert view["headers"] == {"x-plain": "***"}
    assert view["header_secrets"] == {"authorization": arn}
    # "***" keeps the reference too.
    kept = {"url": body["url"], "headers": {"authorization": "***", "x-plain": "***"}}
    assert handle_put(world, kept)["statusCode"] == 200
    stored = store.get(PoolKey(namespace="ns", runner_name="echo"))
    assert stored is not None and stored.header_secrets == {"authorization": arn}
    items = dynamodb.scan(TableName=tables["RunnerConfigsTable"])["Items"]
    assert "sm-api-value" not in json.dumps(items)
    assert arn in json.dumps(items)


def handle_put(world: Any, body: dict[str, Any]) -> dict[str, Any]:
    from functions.api.app import handle

    event = aws_proxy_event("PUT", "/runner-configs/ns/echo", body=body)
    return handle(event, None, world.deps)


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param({"secret_arn": "not-an-arn"}, id="not_an_arn"),
        pytest.param({"secret_arn": "arn:aws:ssm:us-east-1:123456789012:parameter/x"}, id="ssm"),
        pytest.param({"secret_arn": 1}, id="not_a_string"),
        pytest.param({"arn": "x"}, id="unknown_key"),
    ],
)
def test_a_bad_reference_is_422_and_nothing_stored(ref: dict[str, Any]) -> None:
    world = make_world()
    answer = handle_put(world, {"url": "https://runner.example.com", "headers": {"a": ref}})
    assert answer["statusCode"] == 422
    assert world.deps.runner_configs.get(PoolKey(namespace="ns", runner_name="echo")) is None
