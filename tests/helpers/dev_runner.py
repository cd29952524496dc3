"""The dev runner as a pytest fixture, for the integration tests that talk to one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytest

from infra.dev_runner import DevRunner


def dev_runner_fixture(scope: Literal["function", "module"] = "module", **options: Any) -> Any:
    """A fixture (named as the module names it) serving ``DevRunner(**options)`` on loopback."""

    @pytest.fixture(scope=scope)
    def serve() -> Iterator[DevRunner]:
        with DevRunner(**options) as server:
            yield server

    return serve
