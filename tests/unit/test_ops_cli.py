"""Operator commands, no sockets: table and JSON rendering, error answers, SigV4 signing.

The API is an ``httpx.MockTransport`` here; tests/integration/test_ops_cli.py runs the same
commands against the real local stack.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.credentials import ReadOnlyCredentials

from infra import cli, ops
from infra.api_client import (
    ApiAnswerError,
    ApiClient,
    SigV4Auth,
    StackLookupError,
    query,
    region_of,
    sigv4_auth,
)
from tests.sigv4 import AUTHORIZATION, verify_sigv4

FAILING_POOL: dict[str, Any] = {
    "namespace": "ops",
    "runner_name": "broken",
    "url": "https://kit:pa55word@runner.example.com/x?token=abc",
    "headers": {"authorization": "Bearer s3cret-value"},
    "pool_error": {
        "pool": "ops/broken",
        "error": {"code": "serverless_http_error", "status_code": 503, "body": "down"},
        "first_seen": "2026-12-01T08:00:00Z",
        "last_seen": "2026-12-01T08:05:30.123456Z",
        "count": 4,
        "consecutive_successes": 1,
        "stale": False,
    },
}
HEALTHY_POOL: dict[str, Any] = {
    "namespace": "ops",
    "runner_name": "echo",
    "url": "http://127.0.0.1:9/",
    "headers": {},
}


def _args(command: str, **values: Any) -> argparse.Namespace:
    defaults: dict[str, Any] = {
        "json": False,
        "namespace": "ops",
        "page_size": 100,
        "status": None,
        "limit": 100,
    }
    return argparse.Namespace(command=command, **{**defaults, **values})


def _client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> ApiClient:
    return ApiClient("http://api.test/local", transport=httpx.MockTransport(handler), **kwargs)


def _run(args: argparse.Namespace, handler: Callable[[httpx.Request], httpx.Response]) -> Any:
    out, err = io.StringIO(), io.StringIO()
    status = ops.run(args, lambda: _client(handler), out, err)
    return status, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------ rendering


def test_table_aligns_columns_without_trailing_spaces() -> None:
    text = ops.table(["A", "LONGER"], [["x", "1"], ["wide cell", ""]])
    assert text.splitlines() == ["A          LONGER", "x          1", "wide cell"]


def test_pools_table_shows_health_error_and_times_never_headers() -> None:
    text = ops.render_pools([FAILING_POOL, HEALTHY_POOL], "ops")
    header, failing, healthy = text.splitlines()
    assert header.split() == [
        "POOL", "HEALTH", "ERROR", "FIRST", "SEEN", "LAST", "SEEN", "COUNT", "URL"
    ]  # fmt: skip
    assert failing.startswith("ops/broken")
    assert "failing (1 ok)" in failing
    assert "serverless_http_error: endpoint answered HTTP 503: down" in failing
    assert "2026-12-01 08:00:00Z" in failing
    assert "2026-12-01 08:05:30Z" in failing
    assert "https://***@runner.example.com/x " in failing + " "  # no query, no userinfo
    assert "token=abc" not in text
    assert "pa55word" not in text
    assert "s3cret" not in text
    assert re.search(r"ops/echo\s+ok\s+-\s+-\s+-\s+-\s+http://127\.0\.0\.1:9/", healthy)


@pytest.mark.parametrize(
    ("pool_error", "expected"),
    [
        pytest.param(None, "ok", id="healthy"),
        pytest.param({"stale": True}, "stale", id="stale"),
        pytest.param({"consecutive_successes": 0}, "failing", id="failing"),
        pytest.param({"consecutive_successes": 2}, "failing (2 ok)", id="recovering"),
    ],
)
def test_health(pool_error: Any, expected: str) -> None:
    config = {"pool_error": pool_error} if pool_error is not None else {}
    assert ops.health(config) == expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(None, "-", id="none"),
        pytest.param(
            {"code": "actor_failed", "error_code": "boom", "message": "bad\ninput"},
            "actor_failed: ",
            id="actor_failed_one_line",
        ),
        pytest.param(
            {
                "code": "pool_error",
                "error": {"code": "serverless_stream_ended_early"},
                "first_seen": "2026-12-01T08:00:00Z",
                "last_seen": "2026-12-01T08:00:00Z",
                "count": 1,
            },
            "pool_error: serverless_stream_ended_early: stream ended before the init frame",
            id="pool_error_shows_the_pool_error",
        ),
        pytest.param({"code": "brand_new_code", "message": "m"}, "brand_new_code: m", id="unknown"),
        pytest.param({"code": "runner_no_response"}, "runner_no_response", id="malformed"),
    ],
)
def test_error_line(error: Any, expected: str) -> None:
    line = ops.error_line(error, width=200)
    assert line.startswith(expected)
    assert "\n" not in line


def test_error_line_is_cut_to_the_width() -> None:
    line = ops.error_line({"code": "internal_error", "message": "x" * 500}, width=40)
    assert len(line) == 40
    assert line.endswith("...")


def test_actors_and_messages_tables() -> None:
    actors = [
        {
            "actor_id": "a1",
            "namespace": "ops",
            "runner_name": "echo",
            "status": "stopped",
            "error": {"code": "actor_failed", "error_code": "boom", "message": "no"},
            "updated_at": "2026-12-01T08:00:00+00:00",
        }
    ]
    text = ops.render_actors(actors, "ops")
    assert re.search(r"a1\s+ops/echo\s+stopped\s+actor_failed: \S.*2026-12-01 08:00:00Z", text)
    messages = [
        {
            "message_id": "m1",
            "status": "dead_lettered",
            "attempts": 2,
            "disposition": "dead_letter",
            "error": {"code": "actor_failed", "error_code": "boom", "message": "no"},
            "created_at": "2026-12-01T08:00:00Z",
            "finished_at": None,
        }
    ]
    text = ops.render_messages(messages, "a1")
    assert re.search(r"m1\s+dead_lettered\s+2\s+dead_letter\s+actor_failed", text)
    assert ops.render_messages([], "a1") == "no messages for actor a1"
    assert ops.render_actors([], "ops") == "no actors in namespace ops"
    assert ops.render_pools([], "ops") == "no runner configs in namespace ops"


# ------------------------------------------------------------------------------ run()


def test_pools_json_is_the_api_answer_with_header_values_redacted() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/local/runner-configs"
        assert request.url.params["namespace"] == "ops"
        return httpx.Response(200, json={"runner_configs": [FAILING_POOL, HEALTHY_POOL]})

    status, out, _ = _run(_args("pools", json=True), api)
    assert status == 0
    answer = json.loads(out)
    assert [c["runner_name"] for c in answer["runner_configs"]] == ["broken", "echo"]
    assert answer["runner_configs"][0]["headers"] == {"authorization": "***"}
    assert answer["runner_configs"][0]["pool_error"] == FAILING_POOL["pool_error"]
    assert "s3cret" not in out


def test_actors_follow_next_cursor_until_the_last_page() -> None:
    pages = {
        None: ({"actors": [{"actor_id": "a1"}], "next_cursor": "c+/=1"}),
        "c+/=1": ({"actors": [{"actor_id": "a2"}], "next_cursor": "c2"}),
        "c2": ({"actors": [{"actor_id": "a3"}], "next_cursor": None}),
    }
    seen: list[str | None] = []

    def api(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        seen.append(cursor)
        return httpx.Response(200, json=pages[cursor])

    status, out, _ = _run(_args("actors", json=True, page_size=1), api)
    assert status == 0
    assert [a["actor_id"] for a in json.loads(out)["actors"]] == ["a1", "a2", "a3"]
    assert seen == [None, "c+/=1", "c2"]


def test_a_cursor_that_does_not_move_is_an_invalid_answer() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"actors": [{"actor_id": "a1"}], "next_cursor": "same"})

    status, _, err = _run(_args("actors"), api)
    assert status == 1
    assert err.startswith("error: invalid_answer: GET /actors: next_cursor did not move")


def test_messages_pass_the_status_filter_and_stop_at_the_limit() -> None:
    calls: list[httpx.URL] = []

    def api(request: httpx.Request) -> httpx.Response:
        calls.append(request.url)
        n = len(calls)
        items = [{"message_id": f"m{n}-{i}", "status": "dead_lettered"} for i in range(2)]
        return httpx.Response(200, json={"messages": items, "next_cursor": f"c{n}"})

    status, out, _ = _run(_args("messages", actor_id="a/1", status="dead_lettered", limit=3), api)
    assert status == 0
    assert calls[0].raw_path.startswith(b"/local/actors/a%2F1/messages?")
    assert calls[0].params["status"] == "dead_lettered"
    assert len(calls) == 2
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["m1-0", "m1-1", "m2-0"]


def test_retry_and_resume_post_to_their_routes() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        if request.url.path.endswith("/retry"):
            assert request.url.path == "/local/actors/a1/messages/m1/retry"
            body = {"actor_id": "a1", "message_id": "m1", "status": "pending", "attempts": 2}
            return httpx.Response(202, json=body)
        assert request.url.path == "/local/actors/a1/resume"
        return httpx.Response(200, json={"actor_id": "a1", "status": "active"})

    status, out, _ = _run(_args("retry", actor_id="a1", message_id="m1"), api)
    assert (status, out) == (0, "message m1 of actor a1 queued again: status pending, attempts 2\n")
    status, out, _ = _run(_args("resume", actor_id="a1", json=True), api)
    assert status == 0
    assert json.loads(out) == {"actor_id": "a1", "status": "active"}


def test_an_error_answer_prints_its_code_and_exits_1() -> None:
    body = {
        "group": "actor",
        "code": "actor_not_stopped",
        "message": "actor a1 is not stopped",
        "metadata": {"actor_id": "a1"},
    }

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json=body)

    status, out, err = _run(_args("resume", actor_id="a1"), api)
    assert (status, out) == (1, "")
    assert err == "error: actor_not_stopped (HTTP 409): actor a1 is not stopped\n"
    status, out, _ = _run(_args("resume", actor_id="a1", json=True), api)
    assert status == 1
    assert json.loads(out) == {
        "error": {"status": 409, **{k: body[k] for k in body if k != "group"}}
    }


def test_api_gateway_answers_are_named_by_their_error_type_header() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            403,
            json={"message": "The request signature we calculated does not match"},
            headers={"x-amzn-ErrorType": "InvalidSignatureException:http://internal.amazon.com/"},
        )

    status, _, err = _run(_args("pools"), api)
    assert status == 1
    assert err.startswith("error: InvalidSignatureException (HTTP 403): The request signature")


@pytest.mark.parametrize(
    ("response", "code"),
    [
        pytest.param(httpx.Response(502, text="<html>bad gateway</html>"), "http_502", id="html"),
        pytest.param(httpx.Response(200, text="not json"), "invalid_answer", id="2xx_not_json"),
        pytest.param(httpx.Response(200, json=[1]), "invalid_answer", id="2xx_not_object"),
    ],
)
def test_answers_that_are_not_ours_get_a_stable_code(response: httpx.Response, code: str) -> None:
    status, _, err = _run(_args("pools"), lambda request: response)
    assert status == 1
    assert err.startswith(f"error: {code}")


def test_a_transport_failure_is_api_unreachable_without_header_values() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    out, err = io.StringIO(), io.StringIO()
    auth = SigV4Auth(lambda: ReadOnlyCredentials("AKID", "SECRETKEY", "TOKENVALUE"), "eu-west-1")
    status = ops.run(_args("pools"), lambda: _client(api, auth=auth), out, err)
    assert status == 1
    assert err.getvalue().startswith("error: api_unreachable: GET http://api.test/local/")
    for secret in ("SECRETKEY", "TOKENVALUE", "Signature="):
        assert secret not in err.getvalue() + out.getvalue()


# ------------------------------------------------------------------------------ SigV4


def _signed(method: str, path: str, body: Any = None) -> httpx.Request:
    captured: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json={"runner_configs": []})

    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "SESSIONTOKEN")
    auth = SigV4Auth(lambda: credentials, "eu-west-1")
    client = ApiClient("https://abc123.execute-api.eu-west-1.amazonaws.com/Prod", auth=auth,
                       transport=httpx.MockTransport(api))  # fmt: skip
    with contextlib.closing(client):
        client.post(path, body) if method == "POST" else client.get(path, {"cursor": "a+b/c=="})
    return captured[0]


@pytest.mark.parametrize(
    ("method", "body", "signed_headers"),
    [
        pytest.param("GET", None, "host;x-amz-date;x-amz-security-token", id="get_with_query"),
        pytest.param(
            "POST", {"input": 1}, "content-type;host;x-amz-date;x-amz-security-token", id="post"
        ),
    ],
)
def test_sigv4_authorization_has_the_shape_and_verifies(
    method: str, body: Any, signed_headers: str
) -> None:
    request = _signed(method, "/actors/a1/messages", body)
    match = AUTHORIZATION.fullmatch(request.headers["authorization"])
    assert match is not None, request.headers["authorization"]
    assert match["access_key"] == "AKIDEXAMPLE"
    assert match["region"] == "eu-west-1"
    assert match["service"] == "execute-api"
    assert match["signed"] == signed_headers
    assert match["date"] == request.headers["x-amz-date"][:8]
    assert request.headers["x-amz-security-token"] == "SESSIONTOKEN"
    args = (request.method, str(request.url), request.headers, request.content)
    assert verify_sigv4(*args, secret_key="wJalrXUtnFEMI/K7MDENG")
    assert not verify_sigv4(*args, secret_key="another-secret")


def test_sigv4_signature_covers_the_body_and_the_query() -> None:
    request = _signed("POST", "/actors/a1/messages", {"input": 1})
    secret = "wJalrXUtnFEMI/K7MDENG"
    assert not verify_sigv4("POST", str(request.url), request.headers, b'{"input": 2}', secret)
    get = _signed("GET", "/runner-configs")
    assert verify_sigv4("GET", str(get.url), get.headers, b"", secret)
    other_query = str(get.url).replace("a%2Bb", "a%2Bc")
    assert other_query != str(get.url)
    assert not verify_sigv4("GET", other_query, get.headers, b"", secret)


def test_query_uses_sigv4_encoding_and_drops_none() -> None:
    assert query({"namespace": "ops", "cursor": None}) == "?namespace=ops"
    assert query({"cursor": "a+b/c== ~"}) == "?cursor=a%2Bb%2Fc%3D%3D%20~"
    assert query({}) == ""


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://abc123.execute-api.eu-west-1.amazonaws.com/Prod", "eu-west-1"),
        ("https://abc123.execute-api.cn-north-1.amazonaws.com.cn/Prod", "cn-north-1"),
        ("https://api.example.com/v1", None),
        ("http://127.0.0.1:8080", None),
    ],
)
def test_region_of_an_api_url(url: str, region: str | None) -> None:
    assert region_of(url) == region


# ------------------------------------------------------------------------------ usage


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["pools", "--namespace", "ops"], id="neither_api_nor_stack"),
        pytest.param(
            ["pools", "--namespace", "ops", "--api", "http://x", "--stack", "s"], id="both"
        ),
        pytest.param(["pools", "--namespace", "ops", "--api", "ftp://x"], id="not_http"),
        pytest.param(
            ["pools", "--namespace", "ops", "--api", "ftp://u:secret@x"], id="credentials"
        ),
        pytest.param(["pools", "--api", "http://127.0.0.1:1"], id="no_namespace"),
        pytest.param(["messages", "a1", "--api", "http://x", "--status", "nope"], id="bad_status"),
        pytest.param(["messages", "a1", "--api", "http://x", "--limit", "0"], id="bad_limit"),
        pytest.param(["retry", "a1", "--api", "http://x"], id="retry_without_message"),
        pytest.param(["local", "--port", "70000"], id="port_out_of_range"),
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert "secret" not in err


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"runner-kit {version('runner-kit')}\n"


def test_error_answer_type() -> None:
    error = ApiAnswerError(404, "actor_not_found", "no actor a1", {"actor_id": "a1"})
    assert error.to_json()["metadata"] == {"actor_id": "a1"}
    assert ops.render_error(error) == "error: actor_not_found (HTTP 404): no actor a1"


class _Session:
    """The two things ``sigv4_auth`` asks of a botocore session."""

    def __init__(self, credentials: Any, region: str | None) -> None:
        self._credentials, self._region = credentials, region

    def get_credentials(self) -> Any:
        return self._credentials

    def get_config_variable(self, name: str) -> Any:
        assert name == "region"
        return self._region


class _Credentials:
    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return ReadOnlyCredentials("AKID", "SECRET", None)


@pytest.mark.parametrize(
    ("session", "region", "expected"),
    [
        pytest.param(_Session(_Credentials(), "eu-west-1"), None, "eu-west-1", id="session"),
        pytest.param(_Session(_Credentials(), "eu-west-1"), "us-east-2", "us-east-2", id="flag"),
    ],
)
def test_sigv4_auth_from_a_session(session: _Session, region: str | None, expected: str) -> None:
    auth = sigv4_auth(session, region)
    assert (auth.region, auth.service) == (expected, "execute-api")


@pytest.mark.parametrize(
    ("session", "code"),
    [
        pytest.param(_Session(None, "eu-west-1"), "no_credentials", id="no_credentials"),
        pytest.param(_Session(_Credentials(), None), "no_region", id="no_region"),
    ],
)
def test_sigv4_auth_needs_credentials_and_a_region(session: _Session, code: str) -> None:
    with pytest.raises(StackLookupError) as raised:
        sigv4_auth(session, None)
    assert raised.value.code == code
