"""API Gateway REST proxy events for the API tests, built from the `sam local generate-event
apigateway aws-proxy` sample (tests/fixtures/apigw_aws_proxy.json), and checks of that shape."""

from __future__ import annotations

import base64

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from tests.helpers.apigw import aws_proxy_event, sample_event

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


def test_fixture_has_the_sam_aws_proxy_shape() -> None:
    sample = sample_event()
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
