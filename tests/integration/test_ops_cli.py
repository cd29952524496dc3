"""Operator commands against the real local stack, and ``--stack`` through CloudFormation on moto.

``--stack NAME`` reads the ``ApiUrl`` output of a stack created on the moto server over HTTP, and
signs with SigV4 from the standard credential chain; a loopback gate in front of the local
stack's API checks each signature with botocore as API Gateway's IAM auth would, then forwards.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from infra.local.stack import LocalStack
from infra.moto_server import LOCAL_CREDENTIALS
from tests.helpers.cli import assert_api_error, run_cli
from tests.helpers.http import http, wait_for
from tests.helpers.local import quiet_stack
from tests.sigv4 import verify_sigv4

pytestmark = pytest.mark.integration

FAST = {"INIT_TIMEOUT_S": "2", "IDLE_TIMEOUT_S": "2", "PROBE_BACKOFF_BASE_S": "3600"}
NS = "ops"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with quiet_stack(tick_s=3600, environ=FAST) as s:
        assert s.dev_runner is not None
        _pool(s, "echo", s.dev_runner.url)
        _pool(s, "broken", s.dev_runner.fault_url("http_503"))
        for n in range(3):
            _actor(s, f"ops-a{n}", "echo")
        _actor(s, "ops-b", "broken")
        # One message on the broken pool: the actor host's failed start sets the pool's error.
        status, _, body = http("POST", f"{s.api_url}/actors/ops-b/messages", {"input": 1})
        assert status == 202, body
        wait_for("the pool error", lambda: _config(s, "broken").get("pool_error"))
        yield s


def _pool(stack: LocalStack, name: str, url: str) -> None:
    body = {
        "url": url,
        "allow_private_network": True,
        "request_lifespan": 30,
        "headers": {"authorization": "Bearer s3cret-never-printed"},
    }
    status, _, answer = http("PUT", f"{stack.api_url}/runner-configs/{NS}/{name}", body)
    assert status == 200, answer


def _actor(stack: LocalStack, actor_id: str, runner_name: str) -> None:
    body = {"actor_id": actor_id, "namespace": NS, "runner_name": runner_name}
    status, _, answer = http("POST", f"{stack.api_url}/actors", body)
    assert status == 201, answer


def _config(stack: LocalStack, name: str) -> Any:
    return http("GET", f"{stack.api_url}/runner-configs/{NS}/{name}")[2]


def _rows(table: str) -> dict[str, str]:
    return {line.split()[0]: line for line in table.splitlines()[1:]}


def test_pools_table_shows_the_failing_pool_and_its_error(stack: LocalStack) -> None:
    status, out, err = run_cli(["pools", "--api", stack.api_url, "--namespace", NS])
    assert (status, err) == (0, "")
    rows = _rows(out)
    assert set(rows) == {"ops/broken", "ops/echo"}
    assert " failing " in rows["ops/broken"]
    assert "serverless_http_error: endpoint answered HTTP 503" in rows["ops/broken"]
    seen = _config(stack, "broken")["pool_error"]["first_seen"][:19].replace("T", " ")
    assert seen + "Z" in rows["ops/broken"]
    assert " ok " in rows["ops/echo"]
    assert "s3cret" not in out


def test_pools_json_carries_the_pool_error(stack: LocalStack) -> None:
    status, out, _ = run_cli(["pools", "--api", stack.api_url, "--namespace", NS, "--json"])
    assert status == 0
    configs = {c["runner_name"]: c for c in json.loads(out)["runner_configs"]}
    broken = configs["broken"]["pool_error"]
    assert broken["error"]["code"] == "serverless_http_error"
    assert broken["error"]["status_code"] == 503
    assert {"first_seen", "last_seen", "count"} <= set(broken)
    assert "pool_error" not in configs["echo"]
    assert configs["echo"]["headers"] == {"authorization": "***"}
    assert "s3cret" not in out


def test_actors_lists_every_page(stack: LocalStack) -> None:
    argv = ["actors", "--api", stack.api_url, "--namespace", NS, "--page-size", "1"]
    status, out, _ = run_cli(argv)
    assert status == 0
    rows = _rows(out)
    assert set(rows) == {"ops-a0", "ops-a1", "ops-a2", "ops-b"}
    assert all(" active " in row for row in rows.values())
    status, out, _ = run_cli([*argv, "--json"])
    assert status == 0
    assert sorted(a["actor_id"] for a in json.loads(out)["actors"]) == sorted(rows)


def test_an_api_error_answer_exits_1_with_its_code(stack: LocalStack) -> None:
    argv = ["actors", "--api", stack.api_url, "--namespace", "not a name!"]
    assert_api_error(argv, "invalid_request", 422)


def test_an_unreachable_api_exits_1() -> None:
    from infra.serving import free_port

    url = f"http://127.0.0.1:{free_port()}"
    status, _, err = run_cli(["pools", "--api", url, "--namespace", NS])
    assert status == 1
    assert err.startswith(f"error: api_unreachable: GET {url}/runner-configs")


# ------------------------------------------------------------------------ --stack and SigV4


class _SigV4Gate:
    """API Gateway's IAM check in front of the local API: verify SigV4, then forward."""

    def __init__(self, upstream: str, secret_key: str, stage: str = "local") -> None:
        self.upstream = upstream
        self.stage = stage
        self.secret_key = secret_key
        self.verified: list[str] = []
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = f"http://{self.headers['Host']}{self.path}"
                if not verify_sigv4(self.command, url, dict(self.headers), body, gate.secret_key):
                    self._send(403, b'{"message": "signature does not match"}',
                               {"x-amzn-ErrorType": "InvalidSignatureException"})  # fmt: skip
                    return
                gate.verified.append(f"{self.command} {self.path}")
                # API Gateway takes the stage off the path before the integration sees it.
                path = self.path.removeprefix(f"/{gate.stage}")
                req = urllib.request.Request(
                    gate.upstream + path, data=body or None, method=self.command
                )
                if self.headers.get("Content-Type"):
                    req.add_header("Content-Type", self.headers["Content-Type"])
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        self._send(resp.status, resp.read(), {})
                except urllib.error.HTTPError as exc:
                    self._send(exc.code, exc.read(), {})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def gate(stack: LocalStack) -> Iterator[_SigV4Gate]:
    running = _SigV4Gate(stack.api_url, LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    yield running
    running.close()


@pytest.fixture
def deployed(stack: LocalStack, gate: _SigV4Gate, monkeypatch: pytest.MonkeyPatch) -> str:
    """A CloudFormation stack on moto whose ApiUrl output is the gate; boto finds moto by env."""
    import boto3
    from botocore.exceptions import ClientError

    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFORMATION", stack.moto.url)
    cloudformation = boto3.client("cloudformation", endpoint_url=stack.moto.url)
    name = "runner-kit-ops-test"
    try:
        cloudformation.describe_stacks(StackName=name)
    except ClientError:  # not created yet (module-scoped stack, function-scoped env)
        template = {
            "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {"ApiUrl": {"Value": f"{gate.url}/{gate.stage}"}, "Other": {"Value": "x"}},
        }
        cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def test_stack_resolves_the_api_url_output_and_signs_every_request(
    deployed: str, gate: _SigV4Gate
) -> None:
    before = len(gate.verified)
    status, out, err = run_cli(["pools", "--stack", deployed, "--namespace", NS])
    assert (status, err) == (0, "")
    assert "serverless_http_error" in _rows(out)["ops/broken"]
    argv = ["actors", "--stack", deployed, "--namespace", NS, "--page-size", "2"]
    status, out, _ = run_cli(argv)
    assert status == 0
    assert set(_rows(out)) == {"ops-a0", "ops-a1", "ops-a2", "ops-b"}
    assert gate.verified[before] == f"GET /local/runner-configs?namespace={NS}"
    assert len(gate.verified) - before >= 3  # the pools page and at least two actors pages


def test_a_bad_signature_is_refused_and_named(
    deployed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    status, out, err = run_cli(["pools", "--stack", deployed, "--namespace", NS])
    assert (status, out) == (1, "")
    assert err.startswith("error: InvalidSignatureException (HTTP 403)")
    assert "not-the-secret" not in err


def test_an_unknown_stack_exits_1(deployed: str) -> None:
    status, _, err = run_cli(["pools", "--stack", "no-such-stack", "--namespace", NS])
    assert status == 1
    assert err.startswith("error: stack_not_found: ")


def test_a_stack_without_the_output_exits_1(deployed: str, stack: LocalStack) -> None:
    import boto3

    cloudformation = boto3.client("cloudformation", endpoint_url=stack.moto.url)
    template = {"Resources": {"Marker": {"Type": "AWS::SQS::Queue"}}}
    cloudformation.create_stack(StackName="no-outputs", TemplateBody=json.dumps(template))
    status, _, err = run_cli(["pools", "--stack", "no-outputs", "--namespace", NS])
    assert status == 1
    assert err.startswith("error: stack_output_missing: stack 'no-outputs' has no output ApiUrl")
