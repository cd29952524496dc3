"""Contract suites: one test body run against a store's in-memory fake and its DynamoDB store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

S = TypeVar("S")

BACKENDS = ["dynamodb", "memory"]
"""The ``params`` of a contract suite's store fixture."""


def store_for(
    request: pytest.FixtureRequest,
    table: str,
    dynamodb: Callable[[str, Any], S],
    memory: Callable[[], S],
) -> S:
    """The store ``request.param`` names: the fake, or the DynamoDB store on this test's own
    ``table`` (a logical id of template.yaml) through the moto server."""
    if request.param == "memory":
        return memory()
    tables = request.getfixturevalue("tables")
    return dynamodb(tables[table], request.getfixturevalue("dynamodb"))
