"""template.yaml passes cfn-lint, the SAM transform (+ cfn-lint on its output) and the kit's rules.

Each rule also gets a broken template to prove the check can fail.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra import iam, template_production, template_rules
from infra import template_check as tc
from infra.template import FUNCTION_TYPE, TEMPLATE_PATH, functions, load_template, resources

ROOT = TEMPLATE_PATH.parent
TRANSFORM_SCRIPT = ROOT / "infra" / "sam_transform.py"
CFN_LINT = "import sys; from cfnlint.runner import main; sys.exit(main())"


def translator_python() -> Path:
    """The interpreter of ``.venv/translator`` (``make test`` creates it; CI runs make test)."""
    path = Path(
        os.environ.get(
            "RUNNER_KIT_TRANSLATOR_PYTHON", ROOT / ".venv" / "translator" / "bin" / "python"
        )
    )
    if not path.exists():
        pytest.fail(
            f"{path} is missing: run `make test` (it creates .venv/translator with "
            "aws-sam-translator, which pins its own pydantic)"
        )
    return path


def sam_transform(template: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [str(translator_python()), str(TRANSFORM_SCRIPT)],
        input=json.dumps(template),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def cfn_lint(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CFN_LINT, str(path), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    proc = sam_transform(template)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


# ------------------------------------------------------------------ cfn-lint and the transform


def test_cfn_lint_accepts_template() -> None:
    proc = cfn_lint(TEMPLATE_PATH)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cfn_lint_rejects_a_broken_table(tmp_path: Path) -> None:
    broken = tmp_path / "template.yaml"
    broken.write_text(
        TEMPLATE_PATH.read_text().replace("BillingMode: PAY_PER_REQUEST", "BillingMode: NOPE", 1)
    )
    proc = cfn_lint(broken)
    assert proc.returncode != 0
    assert "NOPE" in proc.stdout


def test_transformed_template_passes_cfn_lint(transformed: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "transformed.json"
    out.write_text(json.dumps(transformed))
    # W2001: AWS::LanguageExtensions has already resolved DataRetention into the policies.
    proc = cfn_lint(out, "--ignore-checks", "W2001")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_transform_catches_what_cfn_lint_alone_does_not(template: dict[str, Any]) -> None:
    broken = copy.deepcopy(template)
    event = broken["Resources"]["ActorHostFunction"]["Properties"]["Events"]["Messages"]
    event["Properties"]["BatchSize"] = "ten"
    proc = sam_transform(broken)
    assert proc.returncode != 0
    assert "ActorHostFunction" in proc.stderr


def test_transformed_has_the_deployed_pieces(transformed: dict[str, Any]) -> None:
    res = transformed["Resources"]
    by_type: dict[str, list[str]] = {}
    for logical_id, resource in res.items():
        by_type.setdefault(resource["Type"], []).append(logical_id)
    mappings = [res[m]["Properties"] for m in by_type["AWS::Lambda::EventSourceMapping"]]
    assert [m["FunctionResponseTypes"] for m in mappings] == [["ReportBatchItemFailures"]]
    assert by_type["AWS::Scheduler::Schedule"]
    assert len(by_type["AWS::CloudWatch::Alarm"]) >= 2
    assert by_type["AWS::CloudWatch::Dashboard"]
    operations = [
        operation
        for r in res.values()
        if r["Type"] == "AWS::ApiGateway::RestApi"
        for path_item in r["Properties"]["Body"]["paths"].values()
        for operation in path_item.values()
    ]
    assert operations
    for operation in operations:
        assert operation["security"] == [{"AWS_IAM": []}]
        # Invoked through the function's resource policy, not with the caller's credentials.
        assert "credentials" not in operation["x-amazon-apigateway-integration"]


def test_transformed_roles_grant_no_wildcard_resource(transformed: dict[str, Any]) -> None:
    assert template_production.check_no_wildcard_resource(transformed) == []
    # SAM added no role or managed policy of its own (its SQS poller policy is on "*").
    roles = resources(transformed, "AWS::IAM::Role")
    assert set(roles) == {"ActorHostRole", "ApiRole", "PoolManagerRole", "PoolManagerScheduleRole"}
    assert all("ManagedPolicyArns" not in props for props in roles.values())
    assert "DynamoDBCrudPolicy" not in json.dumps(transformed)


def test_transformed_is_fit_for_production(transformed: dict[str, Any]) -> None:
    res = transformed["Resources"]

    def of(type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in res.items() if v["Type"] == type_}

    schedules = of("AWS::Scheduler::Schedule")
    assert [p["Properties"].get("Name") for p in schedules.values()] == [None]
    assert all("TableName" not in t["Properties"] for t in of("AWS::DynamoDB::Table").values())
    for data in {**of("AWS::DynamoDB::Table"), **of("AWS::SQS::Queue")}.values():
        # AWS::LanguageExtensions resolved the DataRetention parameter (default Retain).
        assert (data["DeletionPolicy"], data["UpdateReplacePolicy"]) == ("Retain", "Retain")
    for table in of("AWS::DynamoDB::Table").values():
        pitr = table["Properties"]["PointInTimeRecoverySpecification"]
        assert pitr == {"PointInTimeRecoveryEnabled": True}
    [mapping] = of("AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["ScalingConfig"] == {
        "MaximumConcurrency": {"Ref": "ActorHostMaxConcurrency"}
    }
    trust = res["PoolManagerScheduleRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    }
    watched = {
        (a["Properties"]["MetricName"], json.dumps(d["Value"]))
        for a in of("AWS::CloudWatch::Alarm").values()
        for d in a["Properties"]["Dimensions"]
    }
    for function in of("AWS::Lambda::Function"):
        for metric in ("Errors", "Throttles"):
            assert (metric, json.dumps({"Ref": function})) in watched, (function, metric)
    queue_name = json.dumps({"Fn::GetAtt": ["ActorMessagesQueue", "QueueName"]})
    assert ("ApproximateAgeOfOldestMessage", queue_name) in watched
    for function in of("AWS::Lambda::Function").values():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]
        assert res[group["Ref"]]["Type"] == "AWS::Logs::LogGroup"


def test_data_retention_delete_relaxes_the_policies(template: dict[str, Any]) -> None:
    dev = copy.deepcopy(template)
    dev["Parameters"]["DataRetention"]["Default"] = "Delete"
    proc = sam_transform(dev)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)["Resources"]
    assert res["ActorsTable"]["DeletionPolicy"] == "Delete"
    assert res["ActorMessagesQueue"]["UpdateReplacePolicy"] == "Delete"


# ------------------------------------------------------------------ the kit's own rules


def test_template_passes_every_kit_rule(template: dict[str, Any]) -> None:
    violations = tc.check_template(template)
    assert violations == [], "\n".join(map(str, violations))


def _with(template: dict[str, Any], edit: Any) -> dict[str, Any]:
    broken = copy.deepcopy(template)
    edit(broken)
    return broken


def _props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return props


def _statement(template: dict[str, Any], role: str, sid: str) -> dict[str, Any]:
    for policy in _props(template, role)["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement.get("Sid") == sid:
                if isinstance(statement["Action"], str):
                    statement["Action"] = [statement["Action"]]
                return statement  # type: ignore[no-any-return]
    raise KeyError(sid)


@pytest.mark.parametrize(
    ("edit", "rule", "needle"),
    [
        pytest.param(
            lambda t: _props(t, "ActorMessagesQueue").update(VisibilityTimeout=300),
            "queue_visibility",
            "VisibilityTimeout 300s < 6 x ActorHostFunction Timeout 300s",
            id="visibility_below_6x_timeout",
        ),
        pytest.param(
            lambda t: t["Globals"]["Function"]["Environment"]["Variables"].pop("IDLE_TIMEOUT_S"),
            "environment",
            "IDLE_TIMEOUT_S is not set",
            id="settings_variable_missing",
        ),
        pytest.param(
            lambda t: _props(t, "ApiFunction")["Environment"]["Variables"].update(
                AWS_LAMBDA_FUNCTION_NAME="x"
            ),
            "environment",
            "AWS_LAMBDA_FUNCTION_NAME is set by Lambda itself",
            id="runtime_fact_set",
        ),
        pytest.param(
            lambda t: t["Globals"]["Function"]["Environment"]["Variables"].update(
                SLOTS_TABLE={"Ref": "LeasesTable"}
            ),
            "tables_declared",
            "SLOTS_TABLE must be !Ref to a declared table",
            id="table_not_declared",
        ),
        pytest.param(
            lambda t: t["Globals"]["Function"]["Environment"]["Variables"].update(
                ACTOR_MESSAGES_DLQ_URL="https://sqs.example/q"
            ),
            "tables_declared",
            "ACTOR_MESSAGES_DLQ_URL must be !Ref to a declared queue",
            id="queue_not_declared",
        ),
        pytest.param(
            lambda t: _props(t, "ApiRole")["Policies"][1]["PolicyDocument"]["Statement"].append(
                {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}
            ),
            "no_wildcard_resource",
            "dynamodb:* on *",
            id="wildcard_resource",
        ),
        pytest.param(
            lambda t: _props(t, "PoolErrorActiveAlarm").update(MetricName="PoolsOnFire"),
            "metrics_emitted",
            "reads RunnerKit/PoolsOnFire, which no function emits",
            id="alarm_on_a_metric_nobody_emits",
        ),
        pytest.param(
            lambda t: t["Mappings"]["HostTimeouts"]["900"].update(VisibilityTimeout=3600),
            "queue_visibility",
            "VisibilityTimeout 3600s < 6 x ActorHostFunction Timeout 900s",
            id="mapping_row_below_6x_an_allowed_timeout",
        ),
        pytest.param(
            lambda t: _statement(t, "ApiRole", "PoolProbesTable")["Action"].append(
                "dynamodb:GetItem"
            ),
            "iam_least_privilege",
            "PoolProbesTable: grants unused ['dynamodb:GetItem']",
            id="iam_action_the_code_never_calls",
        ),
        pytest.param(
            lambda t: _statement(t, "ActorHostRole", "SlotsTable")["Action"].remove(
                "dynamodb:DeleteItem"
            ),
            "iam_least_privilege",
            "SlotsTable: code calls ['dynamodb:DeleteItem']",
            id="iam_action_missing_for_a_transaction_item",
        ),
        pytest.param(
            lambda t: _props(t, "ApiFunction").update(
                Policies=[{"DynamoDBCrudPolicy": {"TableName": {"Ref": "ActorsTable"}}}]
            ),
            "iam_least_privilege",
            "needs its own Role",
            id="sam_policies_instead_of_a_role",
        ),
        pytest.param(
            lambda t: _props(t, "SlotsTable").update(TableName="slots"),
            "production",
            "fixed TableName",
            id="fixed_table_name",
        ),
        pytest.param(
            lambda t: _props(t, "PoolManagerFunction").update(
                Events={"Tick": {"Type": "ScheduleV2", "Properties": {}}}
            ),
            "production",
            "SAM names a schedule event",
            id="sam_schedule_event",
        ),
        pytest.param(
            lambda t: t["Resources"]["MessagesTable"].pop("DeletionPolicy"),
            "production",
            "DeletionPolicy is not Retain",
            id="table_not_retained",
        ),
        pytest.param(
            lambda t: _props(t, "SlotsTable").pop("PointInTimeRecoverySpecification"),
            "production",
            "point-in-time recovery is off",
            id="pitr_off",
        ),
        pytest.param(
            lambda t: _props(t, "ActorHostFunction")["Events"]["Messages"]["Properties"].pop(
                "ScalingConfig"
            ),
            "production",
            "no MaximumConcurrency",
            id="no_maximum_concurrency",
        ),
        pytest.param(
            lambda t: t["Resources"].pop("ApiThrottlesAlarm"),
            "production",
            "no alarm on Throttles",
            id="function_without_throttles_alarm",
        ),
        pytest.param(
            lambda t: t["Resources"].pop("InboxOldestMessageAlarm"),
            "production",
            "no alarm on the oldest message",
            id="queue_without_age_alarm",
        ),
        pytest.param(
            lambda t: _props(t, "ApiFunction").pop("LoggingConfig"),
            "production",
            "no LoggingConfig.LogGroup",
            id="function_without_its_log_group",
        ),
        pytest.param(
            lambda t: _props(t, "Dashboard")["DashboardBody"].update(
                {"Fn::Sub": _props(t, "Dashboard")["DashboardBody"]["Fn::Sub"] + "}"}
            ),
            "metrics_emitted",
            "body is not JSON",
            id="dashboard_not_json",
        ),
    ],
)
def test_kit_rule_catches(template: dict[str, Any], edit: Any, rule: str, needle: str) -> None:
    violations = tc.check_template(_with(template, edit), import_handlers=False)
    assert any(v.rule == rule and needle in v.message for v in violations), violations


def test_code_reading_an_undeclared_table_is_caught(
    template: dict[str, Any], tmp_path: Path
) -> None:
    code = tmp_path / "store.py"
    code.write_text("def table(settings):\n    return settings.leases_table\n")
    violations = template_rules.check_tables_declared(template, paths=[code])
    assert [v.message for v in violations] == [
        "code reads settings.leases_table, which Settings (and so the template) lacks"
    ]


def test_code_today_reads_only_declared_settings(template: dict[str, Any]) -> None:
    violations = template_rules.check_tables_declared(template)
    assert [v for v in violations if v.rule == "tables_declared"] == []


def _function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    broken = copy.deepcopy(template)
    broken["Resources"] = {
        "ProbeFunction": {
            "Type": FUNCTION_TYPE,
            "Properties": {"Handler": handler, "Timeout": 3},
        }
    }
    return broken


@pytest.mark.parametrize(
    ("source", "handler", "needle"),
    [
        pytest.param(
            None, "functions/nope/app.lambda_handler", "ModuleNotFoundError", id="missing"
        ),
        pytest.param(
            "lambda_handler = 3\n",
            "probe_pkg/app.lambda_handler",
            "not callable",
            id="not_callable",
        ),
        pytest.param(
            "import boto3\n_SQS = boto3.client('sqs', region_name='us-east-1')\n"
            "def lambda_handler(event, context):\n    return None\n",
            "probe_pkg/app.lambda_handler",
            "created AWS clients ['sqs']",
            id="client_at_import",
        ),
        pytest.param(
            "import os\nTABLE = os.environ.get('ACTORS_TABLE')\n"
            "def lambda_handler(event, context):\n    return None\n",
            "probe_pkg/app.lambda_handler",
            "reads settings ['ACTORS_TABLE']",
            id="setting_read_at_import",
        ),
        pytest.param(
            "import os\nREGION = os.environ['AWS_REGION']\n",
            "probe_pkg/app.lambda_handler",
            "KeyError",
            id="aws_env_read_at_import",
        ),
    ],
)
def test_handler_rule_catches(
    template: dict[str, Any], tmp_path: Path, source: str | None, handler: str, needle: str
) -> None:
    if source is not None:
        pkg = tmp_path / "probe_pkg"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        (pkg / "app.py").write_text(source)
    violations = template_rules.check_handler_importable(
        _function(template, handler), pythonpath=[str(tmp_path)]
    )
    assert any(needle in v.message for v in violations), violations


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in template_rules.settings_fields():
        assert f"| `{name}` | `{name.upper()}` |" in readme, name


def test_every_metric_the_template_reads_is_documented_in_deploy_md() -> None:
    # Alarm and dashboard metrics are the contract between the code and the template.
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for name in template_production.metrics_read(load_template()):
        assert f"`{name}`" in deploy, name


def test_every_function_has_a_log_group_with_retention(template: dict[str, Any]) -> None:
    groups = resources(template, "AWS::Logs::LogGroup")
    linked = []
    for logical_id, props in functions(template).items():
        group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert groups[group]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, logical_id
        linked.append(group)
    assert sorted(linked) == sorted(groups)  # one each, none shared


# ------------------------------------------------------------------ least privilege, from code


def _code_copy(tmp_path: Path) -> Path:
    for folder in ("functions", "adapters"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def test_iam_is_derived_from_the_code(template: dict[str, Any]) -> None:
    derived = iam.derived_grants(template)
    # Spot checks a reader can verify by eye (the rule compares everything).
    assert derived["ApiFunction"]["PoolProbesTable"] == {"dynamodb:DeleteItem"}
    assert derived["PoolManagerFunction"]["RunnerConfigsTable"] == {"dynamodb:Scan"}
    # commit_success is one transaction: the actor's Update, the message's, the slot's Delete.
    assert derived["ActorHostFunction"]["SlotsTable"] == {"dynamodb:PutItem", "dynamodb:DeleteItem"}
    assert "sqs:ReceiveMessage" in derived["ActorHostFunction"]["ActorMessagesQueue"]
    assert "ActorMessagesQueue" not in derived["PoolManagerFunction"]


def test_a_new_call_in_the_code_needs_a_grant(template: dict[str, Any], tmp_path: Path) -> None:
    root = _code_copy(tmp_path)
    routes = root / "functions" / "api" / "actors.py"
    routes.write_text(routes.read_text() + "\n\ndef _peek(deps):\n    return deps.probes.get(1)\n")
    derived = iam.derived_grants(template, root=root)
    violations = template_production.check_iam_least_privilege(template, derived=derived)
    assert [v.message for v in violations] == ["PoolProbesTable: code calls ['dynamodb:GetItem']"]


def test_a_call_the_derivation_cannot_follow_fails(
    template: dict[str, Any], tmp_path: Path
) -> None:
    root = _code_copy(tmp_path)
    routes = root / "functions" / "api" / "actors.py"
    routes.write_text(routes.read_text() + "\n\ndef _x(deps):\n    return deps.actors.nope()\n")
    with pytest.raises(iam.DerivationError, match="DynamoDBActorStore has no method nope"):
        iam.derived_grants(template, root=root)
