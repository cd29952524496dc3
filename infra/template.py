"""Read ``template.yaml`` and create its tables and queues on any endpoint (moto, local stack).

The template is the one description of what is deployed; tests and the local stack build their
DynamoDB tables and SQS queues from it, so they cannot drift from what ``sam deploy`` creates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

TEMPLATE_PATH: Final = Path(__file__).resolve().parent.parent / "template.yaml"


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
