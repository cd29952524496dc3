"""Shared fixtures: one moto server process per session, a fresh table/queue set per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from infra.moto_server import MotoServer
from infra.template import create_queues, create_tables, queue_specs, table_specs


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A moto server on 127.0.0.1 (its own process); boto3 finds it through the environment."""
    server = MotoServer().start()
    saved = {k: os.environ.get(k) for k in server.environ()}
    os.environ.update(server.environ())
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def dynamodb(moto_server: MotoServer) -> Any:
    """A boto3 DynamoDB client talking HTTP to the moto server."""
    import boto3

    return boto3.client("dynamodb", endpoint_url=moto_server.url, region_name="us-east-1")


@pytest.fixture
def sqs(moto_server: MotoServer) -> Any:
    """A boto3 SQS client talking HTTP to the moto server."""
    import boto3

    return boto3.client("sqs", endpoint_url=moto_server.url, region_name="us-east-1")


@pytest.fixture
def tables(dynamodb: Any) -> dict[str, str]:
    """Every table of template.yaml, created under names unique to this test."""
    suffix = uuid.uuid4().hex[:8]
    names = {lid: f"t-{lid}-{suffix}" for lid in table_specs()}
    create_tables(dynamodb, names)
    return names


@pytest.fixture
def queues(sqs: Any) -> dict[str, str]:
    """Every queue of template.yaml (with its redrive), under names unique to this test: URLs."""
    suffix = uuid.uuid4().hex[:8]
    names = {lid: f"q-{lid}-{suffix}" for lid in queue_specs()}
    return create_queues(sqs, names)
