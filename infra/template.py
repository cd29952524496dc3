"""Read ``template.yaml``: its functions, tables and queues; create the tables and queues anywhere.

The template is the one description of what is deployed and this module its one reader: the
local stack runs its functions, tests build their DynamoDB tables and SQS queues from it (so
they cannot drift from what ``sam deploy`` creates), and the template rules check it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

TEMPLATE_PATH: Final = Path(__file__).resolve().parent.parent / "template.yaml"
FUNCTION_TYPE: Final = "AWS::Serverless::Function"
LAMBDA_DEFAULT_TIMEOUT_S: Final = 3
LAMBDA_DEFAULT_MEMORY_MB: Final = 128
SQS_DEFAULT_BATCH_SIZE: Final = 10


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags (``!Ref X`` -> ``{"Ref": X}``)."""


def _construct_tag(loader: yaml.Loader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}")
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Parse the SAM template, keeping intrinsic functions as plain dicts."""
    with path.open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a template")
    return data


def resolve(template: Mapping[str, Any], value: Any) -> Any:
    """A literal, a parameter's default (``!Ref``), or a ``!FindInMap`` row with its keys
    resolved the same way; anything else (resource refs, ``!GetAtt``) is returned unchanged."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        param = template.get("Parameters", {}).get(value["Ref"])
        return param.get("Default") if param is not None else value
    if isinstance(value, dict) and set(value) == {"Fn::FindInMap"}:
        name, top, second = (resolve(template, part) for part in value["Fn::FindInMap"][:3])
        try:
            return template["Mappings"][name][str(top)][second]
        except (KeyError, TypeError):
            return value
    return value


def resources(template: Mapping[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """Resources of one CloudFormation type, by logical id."""
    return {
        logical_id: res.get("Properties", {})
        for logical_id, res in template.get("Resources", {}).items()
        if res.get("Type") == type_
    }


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
    return int(resolve(template, props.get("Timeout", LAMBDA_DEFAULT_TIMEOUT_S)))


def handler_module(handler: str) -> tuple[str, str]:
    """``functions/api/app.lambda_handler`` -> (``functions.api.app``, ``lambda_handler``)."""
    path, _, attr = handler.rpartition(".")
    return path.replace("/", "."), attr


@dataclass(frozen=True)
class FunctionSpec:
    """What the local stack needs of one ``AWS::Serverless::Function``."""

    logical_id: str
    handler: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, Any]
    sqs_queue: str | None = None
    batch_size: int = SQS_DEFAULT_BATCH_SIZE

    @property
    def module(self) -> str:
        return handler_module(self.handler)[0]

    @property
    def attr(self) -> str:
        return handler_module(self.handler)[1]

    def resource_environ(self, physical: Mapping[str, str]) -> dict[str, str]:
        """The variables that ``!Ref`` a resource of ``physical`` (logical id -> local name/URL)."""
        return {
            name: physical[value["Ref"]]
            for name, value in self.environment.items()
            if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in physical
        }


def function_specs(template: Mapping[str, Any] | None = None) -> dict[str, FunctionSpec]:
    """Every function of the template, with Globals merged and parameter defaults resolved."""
    template = template if template is not None else load_template()
    specs: dict[str, FunctionSpec] = {}
    for logical_id, props in functions(template).items():
        queue, batch = None, SQS_DEFAULT_BATCH_SIZE
        for event in (props.get("Events") or {}).values():
            if event.get("Type") == "SQS":
                ref = event["Properties"]["Queue"]
                queue = ref["Fn::GetAtt"][0] if isinstance(ref, dict) else None
                batch = int(resolve(template, event["Properties"].get("BatchSize", batch)))
        memory = props.get("MemorySize", LAMBDA_DEFAULT_MEMORY_MB)
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            handler=props.get("Handler", ""),
            timeout_s=function_timeout(template, props),
            memory_mb=int(resolve(template, memory)),
            environment={
                k: resolve(template, v) for k, v in props["Environment"]["Variables"].items()
            },
            sqs_queue=queue,
            batch_size=batch,
        )
    return specs


@dataclass(frozen=True)
class TableSpec:
    """What CreateTable needs, from one ``AWS::DynamoDB::Table`` resource."""

    logical_id: str
    key_schema: list[dict[str, str]]
    attribute_definitions: list[dict[str, str]]
    global_secondary_indexes: list[dict[str, Any]]
    ttl_attribute: str | None


def table_specs(template: Mapping[str, Any] | None = None) -> dict[str, TableSpec]:
    """Every table in the template."""
    template = template if template is not None else load_template()
    specs: dict[str, TableSpec] = {}
    for logical_id, props in resources(template, "AWS::DynamoDB::Table").items():
        ttl = props.get("TimeToLiveSpecification") or {}
        specs[logical_id] = TableSpec(
            logical_id=logical_id,
            key_schema=list(props["KeySchema"]),
            attribute_definitions=list(props["AttributeDefinitions"]),
            global_secondary_indexes=list(props.get("GlobalSecondaryIndexes", [])),
            ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled") else None,
        )
    return specs


def create_table(client: Any, spec: TableSpec, name: str) -> None:
    """Create one table (on-demand, as deployed) and wait until it is active."""
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": spec.key_schema,
        "AttributeDefinitions": spec.attribute_definitions,
        "BillingMode": "PAY_PER_REQUEST",
    }
    if spec.global_secondary_indexes:
        kwargs["GlobalSecondaryIndexes"] = spec.global_secondary_indexes
    client.create_table(**kwargs)
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.05})
    if spec.ttl_attribute:
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": spec.ttl_attribute, "Enabled": True},
        )


def create_tables(client: Any, names: Mapping[str, str]) -> None:
    """Create the tables named in ``names`` (logical id -> physical name)."""
    specs = table_specs()
    for logical_id, name in names.items():
        create_table(client, specs[logical_id], name)


@dataclass(frozen=True)
class QueueSpec:
    """One ``AWS::SQS::Queue`` resource."""

    logical_id: str
    attributes: dict[str, str]
    dead_letter_logical_id: str | None
    max_receive_count: int | None

    @property
    def fifo(self) -> bool:
        return self.attributes.get("FifoQueue") == "true"


_QUEUE_ATTRS: Final = {
    "FifoQueue": "FifoQueue",
    "ContentBasedDeduplication": "ContentBasedDeduplication",
    "DeduplicationScope": "DeduplicationScope",
    "FifoThroughputLimit": "FifoThroughputLimit",
    "VisibilityTimeout": "VisibilityTimeout",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
    "DelaySeconds": "DelaySeconds",
}


def queue_specs(template: Mapping[str, Any] | None = None) -> dict[str, QueueSpec]:
    """Every queue in the template, with its redrive target."""
    template = template if template is not None else load_template()
    specs: dict[str, QueueSpec] = {}
    for logical_id, props in resources(template, "AWS::SQS::Queue").items():
        values = {key: resolve(template, props[key]) for key in _QUEUE_ATTRS if key in props}
        attrs = {
            attr: (str(values[key]).lower() if isinstance(values[key], bool) else str(values[key]))
            for key, attr in _QUEUE_ATTRS.items()
            if key in values and not isinstance(values[key], dict)
        }
        redrive = props.get("RedrivePolicy") or {}
        target = redrive.get("deadLetterTargetArn")
        dlq = (
            target["Fn::GetAtt"][0] if isinstance(target, dict) and "Fn::GetAtt" in target else None
        )
        specs[logical_id] = QueueSpec(
            logical_id=logical_id,
            attributes=attrs,
            dead_letter_logical_id=dlq,
            max_receive_count=int(redrive["maxReceiveCount"]) if redrive else None,
        )
    return specs


def create_queues(client: Any, names: Mapping[str, str]) -> dict[str, str]:
    """Create the queues in ``names`` (logical id -> name without ``.fifo``); returns their URLs.

    Dead-letter queues are created first so redrive policies can point at them.
    """
    specs = queue_specs()
    urls: dict[str, str] = {}
    ordered = sorted(names, key=lambda lid: specs[lid].dead_letter_logical_id is not None)
    for logical_id in ordered:
        spec = specs[logical_id]
        name = names[logical_id]
        if spec.fifo and not name.endswith(".fifo"):
            name += ".fifo"
        attrs = dict(spec.attributes)
        if spec.dead_letter_logical_id:
            dlq_url = urls[spec.dead_letter_logical_id]
            dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            attrs["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receive_count}
            )
        urls[logical_id] = client.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    return urls
