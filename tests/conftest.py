"""Shared fixtures: one moto server process per session; the tables and queues a test asks for,
created for it and deleted after it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
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
def tables_for(dynamodb: Any) -> Iterator[Callable[..., dict[str, str]]]:
    """Create some tables of template.yaml (by logical id; none named: all) under names unique to
    this test; every table made is deleted after it, so the moto server does not grow."""
    created: list[str] = []

    def make(*logical_ids: str) -> dict[str, str]:
        specs = table_specs()
        unknown = set(logical_ids) - set(specs)
        assert not unknown, f"no such table in template.yaml: {sorted(unknown)}"
        suffix = uuid.uuid4().hex[:8]
        names = {lid: f"t-{lid}-{suffix}" for lid in logical_ids or specs}
        created.extend(names.values())
        create_tables(dynamodb, names)
        return names

    yield make
    for name in created:
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.delete_table(TableName=name)


@pytest.fixture
def tables(tables_for: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Every table of template.yaml, created under names unique to this test (deleted after it)."""
    return tables_for()


@pytest.fixture
def queues(sqs: Any) -> Iterator[dict[str, str]]:
    """Every queue of template.yaml (with its redrive) under names unique to this test, deleted
    after it: their URLs."""
    suffix = uuid.uuid4().hex[:8]
    names = {lid: f"q-{lid}-{suffix}" for lid in queue_specs()}
    urls = create_queues(sqs, names)
    yield urls
    for url in urls.values():
        with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
            sqs.delete_queue(QueueUrl=url)
