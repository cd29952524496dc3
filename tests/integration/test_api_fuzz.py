"""Schemathesis from docs/openapi.json against the local stack's HTTP API: never a 5xx.

Every operation gets valid and invalid inputs (hypothesis, derandomized so a run is
reproducible); each answer must not be a 5xx and must conform to the document: a documented
status code, its content type, its body schema, its headers. Bounded to about a minute.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from functions.api.openapi import OPENAPI_PATH
from infra.local.stack import LocalStack
from tests.helpers.http import http
from tests.helpers.local import quiet_stack

schema = schemathesis.openapi.from_path(str(OPENAPI_PATH))

# schemathesis' own strategies use the random module, which hypothesis deprecates; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"
)


def no_server_error(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """No 5xx, except the gateway's documented 503s (``group: guard``: by design, DESIGN §6)."""
    status = response.status_code
    if status < 500:
        return
    if status == 503:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("group") == "guard":
            return
    raise AssertionError(f"{case.method} {case.formatted_path}: {status} {response.text[:300]}")


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 100
"""About a minute for the whole run on the 2-core CI machine."""


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    environ = {
        "GATEWAY_READY_TIMEOUT_S": "1",
        "GATEWAY_FIRST_CHECK_S": "0.2",
        "INIT_TIMEOUT_S": "0.5",
    }
    with quiet_stack(tick_s=60.0, environ=environ) as running:
        assert running.dev_runner is not None
        # Something to find: a pool and an actor the fuzzer's ids may hit.
        body = {
            "url": running.dev_runner.url,
            "allow_private_network": True,
            "request_lifespan": 30,
        }
        assert http("PUT", f"{running.api_url}/runner-configs/0/0", body)[0] == 200
        actor = {"actor_id": "0", "namespace": "0", "runner_name": "0"}
        assert http("POST", f"{running.api_url}/actors", actor)[0] == 201
        yield running


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_answer_is_a_5xx_and_every_answer_conforms(
    case: schemathesis.Case, stack: LocalStack
) -> None:
    case.call_and_validate(base_url=stack.api_url, checks=CHECKS, timeout=30)
