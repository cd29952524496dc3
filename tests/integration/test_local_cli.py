"""``runner-kit local`` as a user runs it: ports, the taken-port error, the printed walkthrough.

The command runs as a real process (the console script); the walkthrough it prints is run with
bash, curl and the operator CLI against the stack it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.stack import LocalStack, default_dev_port, walkthrough
from infra.serving import free_port
from tests.helpers.http import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("runner-kit")


def _command(*args: str) -> list[str]:
    if SCRIPT.exists():
        return [str(SCRIPT), *args]
    return [sys.executable, "-m", "infra.cli", *args]  # pragma: no cover - no console script


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _local(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command("local", *args), cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_a_taken_api_port_is_one_line_and_exit_2(taken_port: int) -> None:
    done = _local("--port", str(taken_port), "--dev-port", "0")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"runner-kit local: port {taken_port} on 127.0.0.1 (API) is in use; "
        "pick another with --port N (make local PORT=N)"
    ]
    assert done.stdout == ""


def test_a_taken_dev_runner_port_names_its_option(taken_port: int) -> None:
    done = _local("--port", "0", "--dev-port", str(taken_port))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"runner-kit local: port {taken_port} on 127.0.0.1 (dev runner) is in use; "
        "pick another with --dev-port N"
    ]


def test_the_default_dev_runner_port_follows_the_api_port() -> None:
    # The API's port is free, the one after it is taken (by us, or already by someone else).
    api_port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", api_port + 1))
            sock.listen()
        done = _local("--port", str(api_port))
    assert done.returncode == 2
    assert f"port {api_port + 1} on 127.0.0.1 (dev runner) is in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_one_port_for_both_is_refused() -> None:
    port = free_port()
    done = _local("--port", str(port), "--dev-port", str(port))
    assert done.returncode == 2
    assert "already used by the API" in done.stderr


DEV_PORTS = {"default": (8080, 8081), "next": (9000, 9001), "any": (0, 0)}


@pytest.mark.parametrize(("api_port", "dev_port"), list(DEV_PORTS.values()), ids=list(DEV_PORTS))
def test_dev_runner_port_defaults(api_port: int, dev_port: int) -> None:
    assert default_dev_port(api_port) == dev_port
    assert LocalStack(api_port=api_port).dev_runner_port == dev_port
    assert LocalStack(api_port=api_port, dev_runner_port=7000).dev_runner_port == 7000


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["PORT=9123"], "runner-kit local --port 9123", id="port"),
        pytest.param(
            ["PORT=9123", "DEV_PORT=9200"],
            "runner-kit local --port 9123 --dev-port 9200",
            id="port_and_dev_port",
        ),
        pytest.param([], "runner-kit local --port 8080", id="default"),
    ],
)
def test_make_local_passes_the_port(args: list[str], expected: str) -> None:
    if shutil.which("make") is None:  # pragma: no cover
        pytest.skip("no make")
    done = subprocess.run(
        ["make", "-n", "local", *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert expected in done.stdout


def test_the_readme_shows_the_walkthrough_for_the_default_ports() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert walkthrough("http://127.0.0.1:8080", "http://127.0.0.1:8081") in readme


class _Output:
    """Lines of a process's stdout, collected by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough uses curl")
@pytest.mark.skipif(
    not (ROOT / ".venv" / "bin" / "runner-kit").exists(),
    reason="the walkthrough runs .venv/bin/runner-kit (make .venv/.installed)",
)
def test_the_printed_walkthrough_runs_as_written() -> None:
    api_port, dev_port = free_port(), free_port()
    proc = subprocess.Popen(
        _command("local", "--port", str(api_port), "--dev-port", str(dev_port), "--tick", "1"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = _Output(proc)
    try:
        wait_for("the stack to start", lambda: "Ctrl-C stops everything." in output.lines, 90)
        api, dev = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{dev_port}"
        printed = walkthrough(api, dev)
        assert printed in output.text()
        ran = subprocess.run(
            ["bash", "-e", "-c", printed],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr
        lines = ran.stdout.splitlines()
        assert '"status":"succeeded"' in lines[2]
        assert '"result":{"echo":1}' in lines[2]
        assert lines[3] == '{"fault": "http_503"}'
        assert '"code":"actor_runner_failed"' in lines[4]
        pools = next(line for line in lines if line.startswith("demo/echo"))
        assert "failing" in pools
        assert "serverless_http_error: endpoint answered HTTP 503" in pools
        assert any(line.startswith("a1 ") and " active " in line for line in lines)
        assert lines[-1] == '{"fault": null}'
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        output.thread.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert "stopped." in output.lines
    assert proc.returncode == 0
    assert "Traceback" not in output.text()
