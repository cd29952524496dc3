"""The ``runner-kit`` console script run as an operator runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("runner-kit")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """The console script in its own process, as an operator runs it: (status, out, err).

    Its own process, so the in-process stack's handler logs never mix into its output.
    """
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "infra.cli"]
    done = subprocess.run(
        [*command, *argv], capture_output=True, text=True, timeout=120, check=False
    )
    return done.returncode, done.stdout, done.stderr


def assert_api_error(argv: list[str], code: str, http_status: int) -> None:
    """An API error answer exits 1 with its code: on stderr as text, on stdout with ``--json``."""
    status, out, err = run_cli(argv)
    assert (status, out) == (1, "")
    assert err.startswith(f"error: {code} (HTTP {http_status}): ")
    status, out, _ = run_cli([*argv, "--json"])
    assert status == 1
    assert json.loads(out)["error"]["code"] == code
