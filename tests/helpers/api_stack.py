"""The API Lambda on the moto server as template.yaml wires it: the ``stack`` fixture (environment
and caches), calls through ``lambda_handler``, and the dev runner for the gateway's real flow."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.settings import Settings, get_settings
from adapters.tracker import PoolErrorTracker, build_tracker
from infra.dev_runner import DevRunner
from tests.helpers.apigw import aws_proxy_event
from tests.helpers.settings import table_environ

_HANDLER_MODULES = ("functions.api.app", "functions.actor_host.app", "functions.pool_manager.app")


def _clear_caches() -> None:
    import importlib

    get_settings.cache_clear()
    for name in _HANDLER_MODULES:
        module = importlib.import_module(name)
        module.deps.cache_clear()


@pytest.fixture
def stack(
    tables: dict[str, str], queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Environment as template.yaml sets it, pointing at this test's tables and queues."""
    for env, name in table_environ(tables).items():
        monkeypatch.setenv(env, name)
    monkeypatch.setenv("ACTOR_MESSAGES_QUEUE_URL", queues["ActorMessagesQueue"])
    monkeypatch.setenv("ACTOR_MESSAGES_DLQ_URL", queues["ActorMessagesDLQ"])
    monkeypatch.setenv("POOL_ERROR_CACHE_MS", "0")
    monkeypatch.setenv("GATEWAY_READY_TIMEOUT_S", "6")
    monkeypatch.setenv("CONNECT_TIMEOUT_S", "2")
    monkeypatch.setenv("INIT_TIMEOUT_S", "3")
    monkeypatch.setenv("IDLE_TIMEOUT_S", "3")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    _clear_caches()
    yield get_settings()
    _clear_caches()


def call(method: str, path: str, **kw: Any) -> dict[str, Any]:
    """One API request through ``lambda_handler``, as API Gateway sends it."""
    from functions.api.app import lambda_handler

    return lambda_handler(aws_proxy_event(method, path, **kw), None)


def tracker() -> PoolErrorTracker:
    """The tracker on this test's tables."""
    return build_tracker(get_settings())


def put_config(url: str = "https://93.184.216.34", **body: Any) -> dict[str, Any]:
    """``PUT /runner-configs/ns/echo``."""
    return call("PUT", "/runner-configs/ns/echo", body={"url": url, **body})


def create_actor(actor_id: str = "a1") -> dict[str, Any]:
    """``POST /actors`` for an actor of pool ns/echo."""
    return call(
        "POST", "/actors", body={"actor_id": actor_id, "namespace": "ns", "runner_name": "echo"}
    )


@pytest.fixture
def dev_runner() -> Iterator[DevRunner]:
    """The dev runner endpoint on 127.0.0.1, one per test."""
    runner = DevRunner(hang_s=2.0, slow_init_s=1.0).start()
    try:
        yield runner
    finally:
        runner.stop()
