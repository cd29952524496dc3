"""The kit's own rules for ``template.yaml``, beyond what cfn-lint and the SAM transform check.

1. ``queue_visibility``: a queue that triggers a function has a visibility timeout of at least
   6x that function's timeout (AWS's advice for SQS event sources; less and a slow batch is
   redelivered while it still runs).
2. ``handler_importable``: every function's ``Handler`` imports in a fresh interpreter with no
   AWS environment and exposes a callable; importing it creates no AWS client and reads no
   ``Settings`` variable from the environment (both belong in ``deps()``).
3. ``environment``: every variable ``Settings`` reads is set for every function (Globals or
   the function), except runtime facts Lambda sets itself and optional knobs whose default is
   "off" (``None``).
4. ``tables_declared``: every ``*_table`` / ``*_queue_url`` / ``*_dlq_url`` setting points at a
   table / queue the template declares, and the code reads no such setting ``Settings`` lacks.
5. ``no_wildcard_resource``: no inline policy statement grants ``Resource: "*"``.
6. ``metrics_emitted``: every ``RunnerKit`` metric an alarm or the dashboard reads is named in
   the functions' code (an alarm on a metric nobody emits never fires), and the dashboard body
   is valid JSON.
7. ``iam_least_privilege``: each function's role grants, per table and queue, exactly the
   DynamoDB and SQS actions its code calls (``infra.iam`` derives them from the source), and
   SAM adds no policy of its own (``Role`` set, no ``Policies``).
8. ``production``: no fixed physical names (``TableName``, ``QueueName``, ``FunctionName``,
   ``AlarmName``, ``DashboardName``, log group names, schedule ``Name``) that would collide
   with a second stack; every table and queue has ``DeletionPolicy`` and
   ``UpdateReplacePolicy``; every table has point-in-time recovery; every function has its own
   log group (``LoggingConfig``), Errors and Throttles alarms; the SQS event source has
   ``MaximumConcurrency``; the inbox has an age-of-oldest-message alarm.

``python -m infra.template_check`` prints the violations and exits 1 if there are any.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from infra.template import TEMPLATE_PATH, load_template, resolve, resources

ROOT: Final = TEMPLATE_PATH.parent
VISIBILITY_FACTOR: Final = 6
RUNTIME_FACTS: Final = frozenset({"aws_lambda_function_name"})
"""Settings Lambda itself provides; the template must not set them."""

FUNCTION_TYPE: Final = "AWS::Serverless::Function"
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


def functions(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every SAM function's properties, with ``Globals.Function`` merged in (env merged too)."""
    defaults = template.get("Globals", {}).get("Function", {})
    out: dict[str, dict[str, Any]] = {}
    for logical_id, props in resources(template, FUNCTION_TYPE).items():
        merged = {**defaults, **props}
        env = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        merged["Environment"] = {"Variables": env}
        out[logical_id] = merged
    return out


def function_timeout(template: Mapping[str, Any], props: Mapping[str, Any]) -> int:
    """The function's timeout in seconds (parameter defaults resolved; Lambda's default is 3)."""
    return int(resolve(template, props.get("Timeout", 3)))


def handler_module(handler: str) -> tuple[str, str]:
    """``functions/api/app.lambda_handler`` -> (``functions.api.app``, ``lambda_handler``)."""
    path, _, attr = handler.rpartition(".")
    return path.replace("/", "."), attr


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


_IMPORT_PROBE: Final = """
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
created = []
import botocore.client
_orig = botocore.client.ClientCreator.create_client
def _record(self, service_name, *args, **kwargs):
    created.append(service_name)
    return _orig(self, service_name, *args, **kwargs)
botocore.client.ClientCreator.create_client = _record
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
        proc = subprocess.run(  # noqa: S603 - our interpreter, our probe
            [sys.executable, "-c", _IMPORT_PROBE, module, attr],
            capture_output=True,
            text=True,
            env=_clean_env(pythonpath),
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
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


def _statements(template: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for logical_id, props in functions(template).items():
        for policy in props.get("Policies") or []:
            if isinstance(policy, dict):
                for statement in policy.get("Statement", []):
                    yield logical_id, statement
    for logical_id, props in resources(template, "AWS::IAM::Role").items():
        for policy in props.get("Policies") or []:
            for statement in policy.get("PolicyDocument", {}).get("Statement", []):
                yield logical_id, statement


def check_no_wildcard_resource(template: Mapping[str, Any]) -> list[Violation]:
    """Rule 5: no inline statement allows ``Resource: "*"`` (least privilege)."""
    out: list[Violation] = []
    for logical_id, statement in _statements(template):
        found = statement.get("Resource")
        items = found if isinstance(found, list) else [found]
        if statement.get("Effect") == "Allow" and "*" in items:
            out.append(
                Violation("no_wildcard_resource", logical_id, f"{statement.get('Action')} on *")
            )
    return out


METRICS_NAMESPACE: Final = "RunnerKit"
_DASHBOARD_METRIC: Final = re.compile(r'\[\s*"RunnerKit"\s*,\s*"(\w+)"')
_SUB_VARIABLE: Final = re.compile(r"\$\{[^}]+\}")


def metrics_read(template: Mapping[str, Any]) -> dict[str, str]:
    """``RunnerKit`` metric name -> the alarm or dashboard that reads it."""
    found: dict[str, str] = {}
    for logical_id, props in resources(template, "AWS::CloudWatch::Alarm").items():
        if props.get("Namespace") == METRICS_NAMESPACE:
            found.setdefault(str(props.get("MetricName")), logical_id)
    for logical_id, props in resources(template, "AWS::CloudWatch::Dashboard").items():
        body = props.get("DashboardBody")
        text = body.get("Fn::Sub", "") if isinstance(body, dict) else str(body)
        for name in _DASHBOARD_METRIC.findall(text if isinstance(text, str) else ""):
            found.setdefault(name, logical_id)
    return found


def check_metrics_emitted(
    template: Mapping[str, Any], paths: Iterable[Path] | None = None
) -> list[Violation]:
    """Rule 6: alarms and the dashboard read only metrics the code emits."""
    out: list[Violation] = []
    for logical_id, props in resources(template, "AWS::CloudWatch::Dashboard").items():
        body = props.get("DashboardBody")
        text = body.get("Fn::Sub") if isinstance(body, dict) else body
        try:
            json.loads(_SUB_VARIABLE.sub("x", str(text)))
        except ValueError as exc:
            out.append(Violation("metrics_emitted", logical_id, f"body is not JSON: {exc}"))
    sources = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (paths if paths is not None else sorted((ROOT / "functions").rglob("*.py")))
    )
    for name, where in sorted(metrics_read(template).items()):
        if f'"{name}"' not in sources:
            out.append(
                Violation(
                    "metrics_emitted",
                    where,
                    f"reads {METRICS_NAMESPACE}/{name}, which no function emits",
                )
            )
    return out


def check_iam_least_privilege(
    template: Mapping[str, Any], derived: Mapping[str, Any] | None = None
) -> list[Violation]:
    """Rule 7: the roles grant what the code calls, nothing more, nothing less."""
    from infra.iam import DerivationError, derived_grants, template_grants

    try:
        wanted = derived if derived is not None else derived_grants(template)
    except DerivationError as exc:
        return [Violation("iam_least_privilege", "code", str(exc))]
    granted = template_grants(template)
    out: list[Violation] = []
    for logical_id, props in functions(template).items():
        if props.get("Policies") or "Role" not in props:
            out.append(
                Violation(
                    "iam_least_privilege",
                    logical_id,
                    "needs its own Role (SAM's Policies add managed policies on Resource *)",
                )
            )
        need, have = wanted.get(logical_id, {}), granted.get(logical_id, {})
        for resource in sorted(set(need) | set(have)):
            missing = sorted(set(need.get(resource, ())) - set(have.get(resource, ())))
            extra = sorted(set(have.get(resource, ())) - set(need.get(resource, ())))
            if missing:
                out.append(
                    Violation(
                        "iam_least_privilege", logical_id, f"{resource}: code calls {missing}"
                    )
                )
            if extra:
                out.append(
                    Violation(
                        "iam_least_privilege", logical_id, f"{resource}: grants unused {extra}"
                    )
                )
    return out


FIXED_NAMES: Final = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Scheduler::Schedule": "Name",
    "AWS::IAM::Role": "RoleName",
}
RETAINED_TYPES: Final = ("AWS::DynamoDB::Table", "AWS::SQS::Queue")


def check_production(template: Mapping[str, Any]) -> list[Violation]:
    """Rule 8: what a second stack, a deleted stack and an outage at 3 am need."""
    out: list[Violation] = []
    all_resources = template.get("Resources", {})
    for logical_id, res in all_resources.items():
        type_ = res.get("Type")
        props = res.get("Properties") or {}
        name = FIXED_NAMES.get(type_)
        if name and name in props:
            out.append(
                Violation("production", logical_id, f"fixed {name} (collides across stacks)")
            )
        for event_id, event in (props.get("Events") or {}).items():
            if event.get("Type") in {"Schedule", "ScheduleV2"}:
                out.append(
                    Violation(
                        "production",
                        f"{logical_id}.{event_id}",
                        "SAM names a schedule event after its logical id: declare an "
                        "AWS::Scheduler::Schedule",
                    )
                )
            if event.get("Type") == "SQS":
                scaling = event.get("Properties", {}).get("ScalingConfig") or {}
                if "MaximumConcurrency" not in scaling:
                    out.append(
                        Violation("production", f"{logical_id}.{event_id}", "no MaximumConcurrency")
                    )
        if type_ in RETAINED_TYPES:
            for attr in ("DeletionPolicy", "UpdateReplacePolicy"):
                if resolve(template, res.get(attr, "Delete")) != "Retain":
                    out.append(Violation("production", logical_id, f"{attr} is not Retain"))
        if type_ == "AWS::DynamoDB::Table":
            pitr = props.get("PointInTimeRecoverySpecification") or {}
            if pitr.get("PointInTimeRecoveryEnabled") is not True:
                out.append(Violation("production", logical_id, "point-in-time recovery is off"))
    alarms = resources(template, "AWS::CloudWatch::Alarm").values()
    watched = {
        (a.get("MetricName"), json.dumps(d.get("Value"), sort_keys=True))
        for a in alarms
        for d in a.get("Dimensions") or []
    }
    groups = set(resources(template, "AWS::Logs::LogGroup"))
    for logical_id, props in functions(template).items():
        group = (props.get("LoggingConfig") or {}).get("LogGroup")
        if not (isinstance(group, dict) and group.get("Ref") in groups):
            out.append(Violation("production", logical_id, "no LoggingConfig.LogGroup of its own"))
        for metric in ("Errors", "Throttles"):
            if (metric, json.dumps({"Ref": logical_id})) not in watched:
                out.append(Violation("production", logical_id, f"no alarm on {metric}"))
        for event in (props.get("Events") or {}).values():
            queue = event.get("Properties", {}).get("Queue")
            if event.get("Type") == "SQS" and isinstance(queue, dict):
                name = json.dumps({"Fn::GetAtt": [queue["Fn::GetAtt"][0], "QueueName"]})
                if ("ApproximateAgeOfOldestMessage", name) not in watched:
                    out.append(
                        Violation(
                            "production", queue["Fn::GetAtt"][0], "no alarm on the oldest message"
                        )
                    )
    return out


def check_template(
    template: Mapping[str, Any] | None = None, *, import_handlers: bool = True
) -> list[Violation]:
    """Every kit rule on ``template`` (default: the repository's ``template.yaml``)."""
    template = template if template is not None else load_template()
    violations = [
        *check_queue_visibility(template),
        *check_environment(template),
        *check_tables_declared(template),
        *check_no_wildcard_resource(template),
        *check_metrics_emitted(template),
        *check_iam_least_privilege(template),
        *check_production(template),
    ]
    if import_handlers:
        violations += check_handler_importable(template)
    return violations


def main() -> int:
    violations = check_template(load_template(TEMPLATE_PATH))
    for violation in violations:
        print(violation)
    print(f"template check: {len(violations)} violation(s)")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
