"""The template rules on privilege and production readiness: IAM, metrics, retention, alarms.

Rules 5-8 of ``infra.template_check`` (its docstring lists every rule).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from infra.template import functions, resolve, resources
from infra.template_rules import ROOT, Violation


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
