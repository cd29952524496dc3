"""Build one function's Lambda package: only what its handler runs.

``sam build`` calls this through the Makefile (``BuildMethod: makefile`` in template.yaml): for
``build-ApiFunction`` it runs ``python3 -m infra.package ApiFunction "$ARTIFACTS_DIR"``. The
package holds

- the kit modules the handler can import, found by walking the imports of its module from the
  source (top-level and function-level ``import`` / ``from ... import`` of ``core``,
  ``adapters``, ``functions``), with their packages' ``__init__.py``; never ``tests/``,
  ``docs/``, ``bench/``, ``infra/``, ``template.yaml`` or a cache;
- ``requirements.txt`` installed for the Lambda runtime (CPython 3.12 on arm64, wheels only, so
  the machine that builds needs no python3.12), without boto3: the Lambda runtime provides it
  (docs/deploy.md says why; ``--bundle-boto3`` adds it).

Standard library only: it also runs in SAM's build container (``sam build --use-container``).

    python3 -m infra.package ApiFunction out/ [--no-install] [--bundle-boto3]
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
KIT_PACKAGES: Final = ("core", "adapters", "functions")
HANDLERS: Final = {
    "ActorHostFunction": "functions.actor_host.app",
    "ApiFunction": "functions.api.app",
    "PoolManagerFunction": "functions.pool_manager.app",
}
"""Logical id -> handler module (a test keeps it equal to template.yaml's ``Handler``)."""

LAMBDA_PIP_TARGET: Final = (
    "--platform",
    "manylinux2014_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    "3.12",
    "--only-binary=:all:",
)
"""pip options for wheels that run on Lambda python3.12 / arm64 (template.yaml Globals)."""
RUNTIME_PROVIDED: Final = frozenset({"boto3"})
"""Distributions the Lambda Python runtime already has (not installed unless bundled)."""
JUNK: Final = ("__pycache__", "*.pyc")
"""Dropped at any depth after ``pip install --target`` (plus the top-level ``bin/`` of console
scripts: a ``bin`` deeper down may be a package's own data)."""


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """``adapters.settings`` -> its ``.py`` (or package ``__init__.py``); None if not kit code."""
    if name.split(".")[0] not in KIT_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imported_names(path: Path, module: str) -> set[str]:
    """Every module name ``path`` imports (at any depth: lazy imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                prefix = f"{base}.{node.module}" if node.module else base
            else:
                prefix = node.module or ""
            names.add(prefix)
            # ``from adapters import observability``: the name may be a submodule.
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def kit_closure(entry: str, root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every kit module ``entry`` can import (and their packages)."""
    found: dict[str, Path] = {}
    todo = [entry]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # the packages on the way are imported too
            prefix = ".".join(parts[:i])
            path = module_file(prefix, root)
            if path is None or prefix in found:
                continue
            found[prefix] = path
            todo.extend(_imported_names(path, prefix))
    return found


def copy_kit(logical_id: str, target: Path, root: Path = ROOT) -> list[Path]:
    """Copy the handler's kit modules into ``target``; returns the files, relative."""
    copied = []
    for path in sorted(kit_closure(HANDLERS[logical_id], root).values()):
        relative = path.relative_to(root)
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / relative)
        copied.append(relative)
    return copied


def requirements(root: Path = ROOT, *, bundle_boto3: bool = False) -> list[str]:
    """requirements.txt's lines, without what the runtime provides (unless bundled)."""
    lines = (root / "requirements.txt").read_text(encoding="utf-8").splitlines()
    reqs = [line.strip() for line in lines]
    reqs = [r for r in reqs if r and not r.startswith("#")]
    if bundle_boto3:
        return reqs
    return [r for r in reqs if requirement_name(r) not in RUNTIME_PROVIDED]


def requirement_name(requirement: str) -> str:
    """The distribution a requirement line names (PEP 503 normalised): ``boto3[crt]~=1.34`` ->
    ``boto3``."""
    name = re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def install(target: Path, reqs: list[str], *, pip_target: tuple[str, ...]) -> None:
    """``pip install --target`` the requirements, then drop caches and console scripts."""
    subprocess.run(  # noqa: S603 - our interpreter's pip, our arguments
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(target),
            *pip_target,
            *reqs,
        ],
        check=True,
    )
    shutil.rmtree(target / "bin", ignore_errors=True)
    for pattern in JUNK:
        for junk in list(target.rglob(pattern)):
            if junk.is_dir():
                shutil.rmtree(junk, ignore_errors=True)
            else:
                junk.unlink(missing_ok=True)


def build(
    logical_id: str,
    target: Path,
    *,
    root: Path = ROOT,
    install_requirements: bool = True,
    bundle_boto3: bool = False,
    pip_target: tuple[str, ...] = LAMBDA_PIP_TARGET,
) -> list[Path]:
    """The package of ``logical_id`` in ``target`` (created); returns the kit files."""
    target.mkdir(parents=True, exist_ok=True)
    copied = copy_kit(logical_id, target, root)
    if install_requirements:
        install(target, requirements(root, bundle_boto3=bundle_boto3), pip_target=pip_target)
    return copied


_IMPORT_CHECK: Final = """
import importlib, json, sys, sysconfig
package, module, with_deps = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
app = importlib.import_module(module)
stdlib = sysconfig.get_paths()["stdlib"]
outside = sorted(
    name for name, m in list(sys.modules.items())
    if getattr(m, "__file__", None)
    and not m.__file__.startswith((package, stdlib))
    and not any(m.__file__.startswith(p) for p in sys.path[1:] if p != package and with_deps)
)
if with_deps:
    app.deps()
print(json.dumps({
    "python": sys.version.split()[0], "callable": callable(app.lambda_handler),
    "outside": outside, "infra": "infra" in sys.modules, "tests": "tests" in sys.modules,
}))
"""


def import_check(
    python: str, package: Path, logical_id: str, runtime: Path | None = None
) -> dict[str, Any]:
    """Import the handler under ``python -I -S`` with only ``package`` (and ``runtime``, the
    stand-in for the Lambda runtime's boto3) on the path; with ``runtime``, build ``deps()``."""
    import os

    package = package.resolve()
    runtime = runtime.resolve() if runtime else None
    paths = [str(package)] + ([str(runtime)] if runtime else [])
    code = f"import sys; sys.path[:0] = {paths!r}\n" + _IMPORT_CHECK
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ACCESS_KEY_ID": "check",
        "AWS_SECRET_ACCESS_KEY": "check",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",
        "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    argv = [python, "-I", "-S", "-c", code, str(package), HANDLERS[logical_id]]
    proc, result = run_json_probe([*argv, "1" if runtime else "0"], cwd=package, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    if result is None:
        raise ValueError(f"the import check printed no JSON: {proc.stdout[-500:]!r}")
    return result


def run_json_probe(
    argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """Run a probe script that prints one JSON object last: the process, and that object (None
    when the last line of its output is not JSON)."""
    import json

    proc = subprocess.run(  # noqa: S603 - the interpreter and the script our callers name
        argv, capture_output=True, text=True, cwd=str(cwd), env=env, timeout=timeout, check=False
    )
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return proc, None
    return proc, result if isinstance(result, dict) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("function", choices=sorted(HANDLERS))
    parser.add_argument("target", type=Path)
    parser.add_argument("--no-install", action="store_true", help="kit modules only")
    parser.add_argument("--bundle-boto3", action="store_true", help="ship boto3 in the package")
    parser.add_argument(
        "--check",
        metavar="PYTHON",
        help="then import the handler from the package alone under PYTHON -I -S",
    )
    parser.add_argument("--runtime", type=Path, help="with --check: a dir holding boto3")
    parser.add_argument(
        "--host-platform",
        action="store_true",
        help="wheels for this interpreter (to import-check the package here), not Lambda's",
    )
    opts = parser.parse_args(argv)
    files = build(
        opts.function,
        opts.target,
        install_requirements=not opts.no_install,
        bundle_boto3=opts.bundle_boto3,
        pip_target=() if opts.host_platform else LAMBDA_PIP_TARGET,
    )
    print(f"{opts.function}: {len(files)} kit modules -> {opts.target}")
    if opts.check:
        result = import_check(opts.check, opts.target, opts.function, opts.runtime)
        print(f"{opts.function}: import check {result}")
        return 0 if result.get("callable") and not result.get("outside") else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
