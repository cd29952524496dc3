"""What `sam build` packages: requirements.txt matches pyproject's runtime dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_IN_LAMBDA = {"pyyaml"}  # only the local stack and the template checks read YAML


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def _requirements() -> dict[str, str]:
    lines = (ROOT / "requirements.txt").read_text("utf-8").splitlines()
    reqs = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return {_name(r): r.replace(" ", "") for r in reqs}


def test_requirements_txt_is_pyproject_runtime_minus_local_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    runtime = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    expected = {name: spec for name, spec in runtime.items() if name not in NOT_IN_LAMBDA}
    assert _requirements() == expected


def test_translator_venv_is_excluded_from_lambda_packages() -> None:
    # aws-lambda-builders skips ".venv" when it copies CodeUri; a venv beside it would be shipped.
    makefile = (ROOT / "Makefile").read_text("utf-8")
    match = re.search(r"^TRANSLATOR_VENV\s*\?=\s*(\S+)", makefile, re.MULTILINE)
    assert match
    assert match.group(1).startswith(".venv/")
