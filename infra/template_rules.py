"""The template rules on how the functions are wired: queues, handlers, environment, tables.

Rules 1-4 of ``infra.template_check`` (its docstring lists every rule); each ``check_*`` takes
the parsed template and returns its ``Violation`` list.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from infra.package import run_json_probe
from infra.template import (
    TEMPLATE_PATH,
    function_timeout,
    functions,
    handler_module,
    resolve,
    resources,
)

ROOT: Final = TEMPLATE_PATH.parent
VISIBILITY_FACTOR: Final = 6
RUNTIME_FACTS: Final = frozenset({"aws_lambda_function_name"})
"""Settings Lambda itself provides; the template must not set them."""

CODE_DIRS: Final = ("functions", "adapters")
TABLE_SUFFIXES: Final = ("_table",)
QUEUE_SUFFIXES: Final = ("_queue_url", "_dlq_url")


@dataclass(frozen=True)
class Violation:
    """One broken rule: which rule, where, and what is wrong."""

    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message}"


def check_queue_visibility(template: Mapping[str, Any]) -> list[Violation]:
    """Rule 1: visibility >= 6x the timeout of every function the queue triggers."""
    queues = resources(template, "AWS::SQS::Queue")
    out: list[Violation] = []
    for logical_id, props in functions(template).items():
        for variant in _timeout_variants(template, props.get("Timeout")):
            out += _check_visibility(variant, queues, logical_id, props)
    return list(dict.fromkeys(out))


def _timeout_variants(template: Mapping[str, Any], timeout: Any) -> list[Mapping[str, Any]]:
    """The template once per allowed value of the parameter ``timeout`` names (the
    visibility timeout may be a mapping row keyed by it), else just the template."""
    ref = timeout.get("Ref") if isinstance(timeout, dict) else None
    param = template.get("Parameters", {}).get(ref) if isinstance(ref, str) else None
    if not param or not param.get("AllowedValues"):
        return [template]
    return [
        {
            **template,
            "Parameters": {**template["Parameters"], ref: {**param, "Default": value}},
        }
        for value in param["AllowedValues"]
    ]


def _check_visibility(
    template: Mapping[str, Any],
    queues: Mapping[str, Mapping[str, Any]],
    logical_id: str,
    props: Mapping[str, Any],
) -> list[Violation]:
    out: list[Violation] = []
    timeout = function_timeout(template, props)
    for event in (props.get("Events") or {}).values():
        if event.get("Type") != "SQS":
            continue
        queue_ref = event.get("Properties", {}).get("Queue")
        queue_id = queue_ref.get("Fn::GetAtt", [""])[0] if isinstance(queue_ref, dict) else ""
        if not isinstance(queue_id, str) or queue_id not in queues:
            out.append(Violation("queue_visibility", logical_id, "SQS event names no queue"))
            continue
        visibility = int(resolve(template, queues[queue_id].get("VisibilityTimeout", 30)))
        if visibility < VISIBILITY_FACTOR * timeout:
            out.append(
                Violation(
                    "queue_visibility",
                    queue_id,
                    f"VisibilityTimeout {visibility}s < {VISIBILITY_FACTOR} x "
                    f"{logical_id} Timeout {timeout}s",
                )
            )
    return out


CLIENT_RECORDER: Final = """
import botocore.client
created = []
_orig = botocore.client.ClientCreator.create_client
def _record(self, service_name, *args, **kwargs):
    created.append(service_name)
    return _orig(self, service_name, *args, **kwargs)
botocore.client.ClientCreator.create_client = _record
"""
"""Script lines that record in ``created`` the service of every botocore client made after."""

_ENV_RECORDER: Final = """
import json, os, sys
read = []
_env = os.environ
class _Recording(type(_env)):
    def __getitem__(self, key):
        read.append(key)
        return super().__getitem__(key)
os.environ = _Recording(
    _env._data, _env.encodekey, _env.decodekey, _env.encodevalue, _env.decodevalue
)
"""
_IMPORT_THEN_REPORT: Final = """
import importlib
module_name, attr = sys.argv[1], sys.argv[2]
result = {"error": None, "callable": False, "clients": created, "read": read}
try:
    module = importlib.import_module(module_name)
    result["callable"] = callable(getattr(module, attr, None))
except BaseException as exc:
    result["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(result))
"""
_IMPORT_PROBE: Final = _ENV_RECORDER + CLIENT_RECORDER + _IMPORT_THEN_REPORT
"""Imports a handler's module in a fresh interpreter; prints the error, the settings read and
the clients made."""


def _clean_env(pythonpath: Sequence[str] = ()) -> dict[str, str]:
    """The current environment without anything that could reach AWS or configure a client."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOTO_"))}
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["PYTHONPATH"] = os.pathsep.join([*pythonpath, str(ROOT)])
    return env


def check_handler_importable(
    template: Mapping[str, Any], *, pythonpath: Sequence[str] = ()
) -> list[Violation]:
    """Rule 2: each handler imports cleanly in a fresh interpreter and creates no client."""
    out: list[Violation] = []
    for logical_id, props in functions(template).items():
        handler = props.get("Handler")
        if not isinstance(handler, str):
            out.append(Violation("handler_importable", logical_id, "no Handler"))
            continue
        module, attr = handler_module(handler)
        argv = [sys.executable, "-c", _IMPORT_PROBE, module, attr]
        proc, result = run_json_probe(argv, cwd=ROOT, env=_clean_env(pythonpath), timeout=60)
        if result is None:
            out.append(
                Violation("handler_importable", logical_id, f"probe failed: {proc.stderr[-500:]}")
            )
            continue
        if result["error"]:
            out.append(Violation("handler_importable", logical_id, f"{handler}: {result['error']}"))
        elif not result["callable"]:
            out.append(Violation("handler_importable", logical_id, f"{handler} is not callable"))
        settings_read = sorted({k for k in result.get("read", []) if k.upper() in _setting_vars()})
        if settings_read:
            out.append(
                Violation(
                    "handler_importable",
                    logical_id,
                    f"importing {module} reads settings {settings_read} "
                    "(read them in deps(), not at import)",
                )
            )
        if result["clients"]:
            out.append(
                Violation(
                    "handler_importable",
                    logical_id,
                    f"importing {module} created AWS clients {result['clients']} "
                    "(build them in deps(), not at import)",
                )
            )
    return out


def _setting_vars() -> set[str]:
    return {name.upper() for name in settings_fields()}


def settings_fields() -> dict[str, Any]:
    """``Settings`` field name -> default."""
    from adapters.settings import Settings

    return {name: field.default for name, field in Settings.model_fields.items()}


def required_env_vars(fields: Mapping[str, Any] | None = None) -> set[str]:
    """Environment variables the template must set for every function."""
    fields = fields if fields is not None else settings_fields()
    return {
        name.upper()
        for name, default in fields.items()
        if name not in RUNTIME_FACTS and default is not None
    }


def check_environment(
    template: Mapping[str, Any], fields: Mapping[str, Any] | None = None
) -> list[Violation]:
    """Rule 3: every Settings variable is set for every function; runtime facts are not."""
    fields = fields if fields is not None else settings_fields()
    required = required_env_vars(fields)
    out: list[Violation] = []
    for logical_id, props in functions(template).items():
        env = props["Environment"]["Variables"]
        for missing in sorted(required - set(env)):
            out.append(Violation("environment", logical_id, f"{missing} is not set"))
        for fact in sorted(f.upper() for f in RUNTIME_FACTS if f.upper() in env):
            out.append(Violation("environment", logical_id, f"{fact} is set by Lambda itself"))
    return out


def _is_settings(node: ast.expr) -> bool:
    """``settings``, ``deps.settings``, ``self._settings``, ``get_settings()``, ..."""
    if isinstance(node, ast.Call):
        node = node.func
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return "settings" in str(name).lower()


def _settings_attributes_used(paths: Iterable[Path]) -> dict[str, str]:
    """``*_table`` / ``*_queue_url`` attribute names read in the code -> first file using one."""
    used: dict[str, str] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.endswith(TABLE_SUFFIXES + QUEUE_SUFFIXES)
                and _is_settings(node.value)
            ):
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                used.setdefault(node.attr, str(where))
    return used


def code_files(root: Path = ROOT) -> list[Path]:
    """The Python files deployed as function code that may read settings."""
    return sorted(p for d in CODE_DIRS for p in (root / d).rglob("*.py"))


def check_tables_declared(
    template: Mapping[str, Any],
    fields: Mapping[str, Any] | None = None,
    paths: Iterable[Path] | None = None,
) -> list[Violation]:
    """Rule 4: table/queue settings name declared resources; code reads only declared ones."""
    fields = fields if fields is not None else settings_fields()
    declared = {
        TABLE_SUFFIXES: ("table", set(resources(template, "AWS::DynamoDB::Table"))),
        QUEUE_SUFFIXES: ("queue", set(resources(template, "AWS::SQS::Queue"))),
    }
    out: list[Violation] = []
    for logical_id, props in functions(template).items():
        env = props["Environment"]["Variables"]
        for name in sorted(fields):
            kind = next((k for suffixes, k in declared.items() if name.endswith(suffixes)), None)
            value = env.get(name.upper())
            if kind is None or value is None:
                continue
            what, logical_ids = kind
            ref = value.get("Ref") if isinstance(value, dict) else None
            if ref not in logical_ids:
                out.append(
                    Violation(
                        "tables_declared",
                        logical_id,
                        f"{name.upper()} must be !Ref to a declared {what}, got {value!r}",
                    )
                )
    used = _settings_attributes_used(paths if paths is not None else code_files())
    for attr, where in sorted(used.items()):
        if attr not in fields:
            out.append(
                Violation(
                    "tables_declared",
                    where,
                    f"code reads settings.{attr}, which Settings (and so the template) lacks",
                )
            )
    return out
