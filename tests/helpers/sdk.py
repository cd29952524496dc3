"""The SDK example endpoint (examples/endpoint_echo.py) and the stdlib host that serves an
``Endpoint`` on 127.0.0.1."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner_kit_endpoint import Endpoint

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "endpoint_echo.py"


def load_example() -> Any:
    """examples/endpoint_echo.py, imported from its file."""
    spec = importlib.util.spec_from_file_location("endpoint_echo", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def stdlib_host(endpoint: Endpoint) -> Iterator[str]:
    """Serve ``endpoint`` with its own stdlib server: its URL."""
    with endpoint.server() as server:
        yield server.url
