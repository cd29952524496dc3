"""Code run in a fresh interpreter at the repository root, for what only a new process shows
(import side effects, logging set up from scratch, the SnapStart hooks)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clean_env(drop: tuple[str, ...] = ("AWS_",), **extra: str) -> dict[str, str]:
    """This environment less the variables starting with ``drop``, with the repository on
    ``PYTHONPATH``, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_python(script: str, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -c script args`` with exactly ``env``; it must exit 0."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(env),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc
