"""API Gateway REST proxy events built from the `sam local generate-event apigateway aws-proxy`
sample (tests/fixtures/apigw_aws_proxy.json), and readers of the resolver's answers."""

from __future__ import annotations

import base64
import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "apigw_aws_proxy.json"


@cache
def sample_event() -> dict[str, Any]:
    """The SAM CLI sample event, read once."""
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
    event = copy.deepcopy(sample_event())
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
