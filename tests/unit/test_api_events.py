"""API Gateway REST proxy events for the API tests, built from the `sam local generate-event
apigateway aws-proxy` sample (tests/fixtures/apigw_aws_proxy.json), and checks of that shape."""

from __future__ import annotations

import base64
import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "apigw_aws_proxy.json"

# The top-level and requestContext keys of SAM CLI's AwsProxy.json (aws-sam-cli,
# samcli/lib/generated_sample_events/events/apigateway/AwsProxy.json).
SAM_TOP_LEVEL_KEYS = {
    "body",
    "resource",
    "path",
    "httpMethod",
    "isBase64Encoded",
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "pathParameters",
    "stageVariables",
    "headers",
    "multiValueHeaders",
    "requestContext",
}
SAM_REQUEST_CONTEXT_KEYS = {
    "accountId",
    "resourceId",
    "stage",
    "requestId",
    "requestTime",
    "requestTimeEpoch",
    "identity",
    "path",
    "resourcePath",
    "httpMethod",
    "apiId",
    "protocol",
}


@cache
def _sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def aws_proxy_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | bytes | None = None,
    query: dict[str, str | list[str]] | None = None,
    headers: dict[str, str] | None = None,
    content_type: str | None = "application/json",
    base64_body: bool = True,
) -> dict[str, Any]:
    """A proxy event for ``method path`` as API Gateway (and ``sam local``) sends it.

    ``body`` is JSON-encoded; ``raw_body`` is sent as-is. Bodies are base64 like the sample.
    """
    event = copy.deepcopy(_sample())
    event["httpMethod"] = method
    event["path"] = path
    event["pathParameters"] = {"proxy": path}
    context = event["requestContext"]
    context["httpMethod"] = method
    context["path"] = f"/{context['stage']}{path}"
    if raw_body is None and body is not None:
        raw_body = json.dumps(body)
    if raw_body is None:
        event["body"] = None
        event["isBase64Encoded"] = False
    else:
        data = raw_body.encode() if isinstance(raw_body, str) else raw_body
        event["body"] = base64.b64encode(data).decode() if base64_body else data.decode()
        event["isBase64Encoded"] = base64_body
    multi = {k: (v if isinstance(v, list) else [v]) for k, v in (query or {}).items()}
    event["multiValueQueryStringParameters"] = multi or None
    event["queryStringParameters"] = {k: v[-1] for k, v in multi.items()} or None
    all_headers = dict(event["headers"])
    if content_type and raw_body is not None:
        all_headers["Content-Type"] = content_type
    all_headers.update(headers or {})
    event["headers"] = all_headers
    event["multiValueHeaders"] = {k: [v] for k, v in all_headers.items()}
    return event


def response_json(response: dict[str, Any]) -> Any:
    """The JSON body of a resolver answer (``None`` when empty)."""
    body = response.get("body")
    if not body:
        return None
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)


def response_header(response: dict[str, Any], name: str) -> str | None:
    """One header of a resolver answer (REST answers use ``multiValueHeaders``)."""
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return str(values[-1])
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def test_fixture_has_the_sam_aws_proxy_shape() -> None:
    sample = _sample()
    assert set(sample) == SAM_TOP_LEVEL_KEYS
    assert set(sample["requestContext"]) == SAM_REQUEST_CONTEXT_KEYS
    assert sample["isBase64Encoded"] is True
    assert base64.b64decode(sample["body"]) == b'{"test":"body"}'


def test_built_event_keeps_the_shape_and_parses() -> None:
    event = aws_proxy_event(
        "POST", "/actors/a1/messages", body={"input": 1}, query={"wait": "true"}
    )
    assert set(event) == SAM_TOP_LEVEL_KEYS
    assert set(event["requestContext"]) == SAM_REQUEST_CONTEXT_KEYS
    parsed = APIGatewayProxyEvent(event)
    assert parsed.http_method == "POST"
    assert parsed.path == "/actors/a1/messages"
    assert parsed.json_body == {"input": 1}
    assert parsed.get_query_string_value("wait") == "true"
    assert parsed.headers["content-type"] == "application/json"
