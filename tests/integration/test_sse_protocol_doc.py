"""The minimal endpoint in docs/protocol.md really speaks protocol v1 to the kit."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapters.runner.attempt import StartLimits
from adapters.runner.client import RunnerClient, probe
from adapters.runner.transport import StartTarget
from core.models import PoolKey
from core.protocol import DoneFrame, InitFrame, OutputFrame, start_body

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def example_code() -> str:
    text = DOC.read_text()
    section = text[text.index("## A minimal endpoint") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "docs/protocol.md lost its example"
    return match.group(1)


@pytest.fixture
def endpoint() -> Iterator[str]:
    namespace: dict[str, Any] = {"__name__": "doc_example"}
    exec(compile(example_code(), str(DOC), "exec"), namespace)
    server = ThreadingHTTPServer(("127.0.0.1", 0), namespace["Runner"])
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def target(url: str) -> StartTarget:
    pool = PoolKey(namespace="doc", runner_name="example")
    return StartTarget(url, {}, pool, 1, 60, allow_private_network=True)  # 1 slot, 60 s


def test_doc_example_runs_an_execution_and_answers_probes(endpoint: str) -> None:
    with RunnerClient(StartLimits(init_timeout_s=5)) as client:
        body = start_body("a-1", "m-1", {"count": 2}, "hi")
        with client.start(target(endpoint), body) as stream:
            frames = list(stream)
        assert probe(client, target(endpoint)).ok
    assert isinstance(frames[0], InitFrame)
    assert frames[1:] == [
        OutputFrame(data={"echo": "hi"}),
        DoneFrame(output={"echo": "hi"}, state={"count": 3}),
    ]
