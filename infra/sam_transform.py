"""Run the AWS SAM transform offline: SAM template JSON on stdin, CloudFormation JSON on stdout.

This script runs inside ``.venv/translator`` (created by the Makefile), because
aws-sam-translator pins its own pydantic. It imports only the standard library and
``samtranslator``: no kit module, no AWS call (the managed-policy map is static and the pseudo
parameters are fixed), so it works on a machine without credentials or network.

    .venv/translator/bin/python infra/sam_transform.py < template.json > transformed.json
"""

from __future__ import annotations

import json
import sys
from typing import Any, Final

# Only what a template may name in ``Policies:`` as a bare string; SAM builds the ARNs of the
# roles it adds itself (basic execution, SQS poller) without this map.
STATIC_MANAGED_POLICIES: Final = {
    "AWSLambdaBasicExecutionRole": (
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ),
    "AWSLambdaSQSQueueExecutionRole": (
        "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
    ),
    "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
    "CloudWatchLambdaInsightsExecutionRolePolicy": (
        "arn:aws:iam::aws:policy/CloudWatchLambdaInsightsExecutionRolePolicy"
    ),
}

PSEUDO_PARAMETERS: Final = {"AWS::Region": "us-east-1", "AWS::Partition": "aws"}


PACKAGED_CODE_URI: Final = "s3://runner-kit-artifacts/code.zip"


def as_packaged(template: dict[str, Any]) -> dict[str, Any]:
    """The template as ``sam package`` uploads it: local ``CodeUri`` paths become S3 URIs."""
    out: dict[str, Any] = json.loads(json.dumps(template))
    function_globals = out.get("Globals", {}).get("Function", {})
    if isinstance(function_globals.get("CodeUri"), str):
        function_globals["CodeUri"] = PACKAGED_CODE_URI
    for resource in out.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(
            props.get("CodeUri"), str
        ):
            props["CodeUri"] = PACKAGED_CODE_URI
    return out


LANGUAGE_EXTENSIONS: Final = "AWS::LanguageExtensions"
POLICY_ATTRIBUTES: Final = ("DeletionPolicy", "UpdateReplacePolicy")


def language_extensions(
    template: dict[str, Any], parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What ``AWS::LanguageExtensions`` does before the SAM transform, for what the kit uses
    of it: a ``Ref`` to a parameter in ``DeletionPolicy`` / ``UpdateReplacePolicy`` becomes the
    parameter's value (given, else its default)."""
    out: dict[str, Any] = json.loads(json.dumps(template))
    values = {
        name: (parameters or {}).get(name, spec.get("Default"))
        for name, spec in (out.get("Parameters") or {}).items()
    }
    for resource in (out.get("Resources") or {}).values():
        for attr in POLICY_ATTRIBUTES:
            value = resource.get(attr)
            if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in values:
                resource[attr] = values[value["Ref"]]
    transform = out.get("Transform")
    if isinstance(transform, list):
        out["Transform"] = [t for t in transform if t != LANGUAGE_EXTENSIONS]
        if len(out["Transform"]) == 1:
            out["Transform"] = out["Transform"][0]
    return out


class StaticManagedPolicyLoader:
    """A ``ManagedPolicyLoader`` that never calls IAM."""

    def load(self) -> dict[str, str]:
        return dict(STATIC_MANAGED_POLICIES)


def transform(template: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CloudFormation template SAM would deploy for ``template``."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    # What ``samtranslator.translator.transform.transform`` does, with a session that has a
    # region (the translator reads pseudo parameters from it; creating it calls nothing).
    session = boto3.session.Session(region_name=PSEUDO_PARAMETERS["AWS::Region"])
    values = {**PSEUDO_PARAMETERS, **(parameters or {})}
    policies = StaticManagedPolicyLoader().load()
    translator = Translator(None, Parser(), boto_session=session)
    out: dict[str, Any] = translator.translate(
        as_packaged(language_extensions(template, parameters)),
        values,
        get_managed_policy_map=lambda: policies,
    )
    return out


def main() -> int:
    from samtranslator.model.exceptions import InvalidDocumentException

    template = json.load(sys.stdin)
    try:
        out = transform(template)
    except InvalidDocumentException as exc:
        for cause in exc.causes:
            print(f"sam transform: {cause.message}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
