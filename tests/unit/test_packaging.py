"""What `sam build` packages: requirements.txt matches pyproject's runtime dependencies, and
each function's package (infra/package.py, run by `make build-<LogicalId>`) holds only the kit
modules its handler imports, none of tests/docs/bench/infra or caches, and imports alone.
"""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from infra import package
from infra.package import HANDLERS
from infra.template import functions as template_functions
from infra.template import handler_module, load_template

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


# ------------------------------------------------------------------ lean Lambda packages


def test_package_handlers_match_the_template() -> None:
    template = load_template()
    functions = template_functions(template)
    assert {lid: handler_module(p["Handler"])[0] for lid, p in functions.items()} == HANDLERS
    makefile = (ROOT / "Makefile").read_text("utf-8")
    for logical_id in functions:
        # BuildMethod makefile: sam build runs `make build-<LogicalId>` (infra/package.py).
        assert template["Resources"][logical_id]["Metadata"] == {"BuildMethod": "makefile"}
        assert logical_id in re.search(r"^FUNCTIONS := (.*)$", makefile, re.M).group(1)  # type: ignore[union-attr]


def _dirty_source(tmp_path: Path) -> Path:
    """A copy of the source tree as a working tree leaves it: caches, tests, docs, bench."""
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".venv", ".git", ".aws-sam", "build", "*.egg-info"),
    )
    for junk in ("core/__pycache__/errors.cpython-311.pyc", ".hypothesis/x", ".ruff_cache/y"):
        (src / junk).parent.mkdir(parents=True, exist_ok=True)
        (src / junk).write_text("junk")
    return src


@pytest.mark.parametrize("logical_id", sorted(HANDLERS))
def test_package_holds_only_what_the_handler_runs(logical_id: str, tmp_path: Path) -> None:
    src = _dirty_source(tmp_path)
    out = tmp_path / "package"
    files = package.build(logical_id, out, root=src, install_requirements=False)
    shipped = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert shipped == sorted(map(str, files))
    assert all(f.endswith(".py") and f.split("/")[0] in package.KIT_PACKAGES for f in shipped)
    own = HANDLERS[logical_id].rsplit(".", 1)[0].replace(".", "/")
    assert f"{own}/app.py" in shipped
    # Another function's code, the OpenAPI generator and the local stack never ship.
    others = {m.rsplit(".", 1)[0].replace(".", "/") for m in HANDLERS.values()} - {own}
    assert not [f for f in shipped if any(f.startswith(o + "/") for o in others)]
    assert "functions/api/openapi.py" not in shipped


def test_the_walk_follows_lazy_imports() -> None:
    # actor_host imports the SSE client inside build_deps(), not at the top.
    assert "adapters.runner.client" in package.kit_closure(HANDLERS["ActorHostFunction"])
    assert "adapters.runner.client" not in package.kit_closure(HANDLERS["ApiFunction"])


@pytest.mark.parametrize("logical_id", sorted(HANDLERS))
def test_handler_imports_from_its_package_alone(logical_id: str, tmp_path: Path) -> None:
    out = tmp_path / "package"
    package.build(logical_id, out, install_requirements=False)
    # Third-party code from this venv stands in for the installed requirements and the
    # runtime's boto3; the kit's own modules must all come from the package.
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    result = package.import_check(sys.executable, out, logical_id, runtime=site)
    assert result.get("callable") is True, result
    assert result["outside"] == []
    assert (result["infra"], result["tests"]) == (False, False)


def test_boto3_is_left_to_the_runtime_unless_bundled() -> None:
    names = [_name(r) for r in package.requirements()]
    assert "boto3" not in names and "pydantic" in names
    assert "boto3" in [_name(r) for r in package.requirements(bundle_boto3=True)]


@pytest.mark.parametrize(
    ("line", "name"),
    [
        pytest.param("boto3>=1.34", "boto3", id="at_least"),
        pytest.param("boto3~=1.34", "boto3", id="compatible"),
        pytest.param("boto3[crt]>=1.34", "boto3", id="extras"),
        pytest.param("boto3<2", "boto3", id="below"),
        pytest.param("boto3 ; python_version >= '3.9'", "boto3", id="marker"),
        pytest.param("Aws_Lambda.Powertools>=3", "aws-lambda-powertools", id="normalised"),
    ],
)
def test_requirement_names_are_read_whatever_the_specifier(line: str, name: str) -> None:
    assert package.requirement_name(line) == name


def test_a_runtime_provided_requirement_is_left_out_whatever_its_spelling(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("  # indented comment\nboto3[crt]~=1.34\nhttpx<1\n")
    assert package.requirements(tmp_path) == ["httpx<1"]
    bundled = package.requirements(tmp_path, bundle_boto3=True)
    assert bundled == ["boto3[crt]~=1.34", "httpx<1"]  # as written, once
