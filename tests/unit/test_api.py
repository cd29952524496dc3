"""The API on in-memory stores and the real tracker, with a virtual clock (no sockets, no waits)."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta
from typing import Any

import pytest

from adapters.observability import Invocation
from core.errors import NoCapacity, RunnerNoResponse
from core.models import MessageEnvelope
from functions.api.app import handle, serve, summarize
from functions.api.url_check import make_url_check
from tests.helpers.api import (
    HTTP_503,
    POOL,
    START,
    World,
    assert_error,
    fake_resolver,
    make_world,
    post_wait,
)
from tests.helpers.apigw import aws_proxy_event, response_header, response_json, sample_event

SECRET = "Bearer s3cret-value"


@pytest.fixture
def world() -> World:
    return make_world()


# --- runner configs ---------------------------------------------------------------------------


def test_put_and_get_runner_config_redacts_headers(world: World) -> None:
    put = world.put_config(headers={"authorization": SECRET}, max_runners=3)
    assert put["statusCode"] == 200
    assert SECRET not in put["body"]
    body = response_json(put)
    assert body["headers"] == {"authorization": "***"}
    assert body["max_runners"] == 3
    assert "pool_error" not in body
    got = world.call("GET", "/runner-configs/ns/echo")
    assert got["statusCode"] == 200
    assert SECRET not in got["body"]
    assert response_json(got)["url"] == "https://runner.example.com"
    stored = world.deps.runner_configs.get(POOL)
    assert stored is not None
    assert stored.header_values() == {"authorization": SECRET}


def test_put_with_redacted_value_keeps_the_stored_secret(world: World) -> None:
    world.put_config(headers={"authorization": SECRET, "x-team": "a"})
    world.put_config(headers={"authorization": "***", "x-team": "b"}, max_runners=4)
    stored = world.deps.runner_configs.get(POOL)
    assert stored is not None
    assert stored.header_values() == {"authorization": SECRET, "x-team": "b"}
    assert stored.max_runners == 4


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(None, id="new_pool"),
        pytest.param({"x-team": "a"}, id="new_header"),
    ],
)
def test_put_with_redacted_value_and_nothing_stored_is_refused(
    world: World, first: dict[str, str] | None
) -> None:
    if first is not None:
        world.put_config(headers=first)
    before = world.deps.runner_configs.get(POOL)
    answer = world.put_config(headers={"authorization": "***"})
    body = assert_error(answer, 422, "runner_config_header_invalid")
    assert body["metadata"] == {"header": "authorization", "problem": "nothing_to_keep"}
    assert world.deps.runner_configs.get(POOL) == before  # nothing stored


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"authorization": "***"}, id="keeps_a_value"),
        pytest.param({"authorization": "Bearer new-value"}, id="replaces"),
    ],
)
def test_put_reads_the_stored_config_once(
    world: World, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    world.put_config(headers={"authorization": SECRET})
    store = world.deps.runner_configs
    reads: list[str] = []
    for name in ("get", "get_with_revision"):
        read = getattr(store, name)
        monkeypatch.setattr(store, name, lambda pool, n=name, r=read: reads.append(n) or r(pool))
    assert world.put_config(headers=headers)["statusCode"] == 200
    assert len(reads) == 1, reads  # one read decides the retire and feeds the "***" merge


TOKEN = "Bearer TOPSECRET-123"  # each bad value below is this token, damaged


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(TOKEN + " ", id="trailing_space"),
        pytest.param(" " + TOKEN, id="leading_space"),
        pytest.param(TOKEN + "\r\nx-evil: 1", id="crlf"),
        pytest.param(TOKEN + "\n", id="lf"),
        pytest.param(TOKEN.replace("-", "\x00"), id="nul"),
        pytest.param(TOKEN.replace("-", "\x7f"), id="del"),
        pytest.param(TOKEN.replace("-", "\x1b"), id="escape"),
        pytest.param(TOKEN.replace("123", "\u00e9"), id="non_ascii"),
    ],
)
def test_header_value_must_be_a_field_value_and_is_never_echoed(world: World, value: str) -> None:
    answer = world.put_config(headers={"Authorization": value})
    err = assert_error(answer, 422, "runner_config_header_invalid")
    assert err["metadata"] == {"header": "Authorization", "problem": "invalid_value"}
    assert "TOPSECRET" not in answer["body"]
    assert world.deps.runner_configs.get(POOL) is None


def test_put_resets_probe_backoff(world: World) -> None:
    world.probes.record_failure(POOL, failures=5, next_probe_at=1e12, error_code="x")
    assert world.put_config()["statusCode"] == 200
    assert world.probes.get(POOL) is None


HEADER_INVALID = (422, "runner_config_header_invalid")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({"headers": {"X-Runner-Pool": "x"}}, *HEADER_INVALID, id="reserved_x_runner"),
        pytest.param({"headers": {"Accept": "x"}}, *HEADER_INVALID, id="reserved_accept"),
        pytest.param({"headers": {"bad header": "x"}}, *HEADER_INVALID, id="header_not_token"),
        *[
            pytest.param({"headers": {name: "x"}}, *HEADER_INVALID, id=f"hop_{name}")
            for name in (
                "Connection",
                "keep-alive",
                "TE",
                "trailer",
                "transfer-encoding",
                "upgrade",
                "proxy-authorization",
                "Proxy-Foo",
                "host",
                "content-length",
                "expect",
            )
        ],
        pytest.param(
            {"headers": {"x-big": "a" * 8000, **{f"x-{i}": "b" * 8000 for i in range(5)}}},
            *HEADER_INVALID,
            id="headers_too_large",
        ),
        pytest.param({"url": "http://a b/"}, 422, "runner_config_invalid", id="url_space"),
        pytest.param({"url": "http://a:99999/"}, 422, "runner_config_invalid", id="port_high"),
        pytest.param({"url": "http://a:0/"}, 422, "runner_config_invalid", id="port_zero"),
        pytest.param({"url": "http:///x"}, 422, "runner_config_invalid", id="empty_host"),
        pytest.param({"url": "http://a..b/"}, 422, "runner_config_invalid", id="empty_label"),
        pytest.param(
            {"url": "http://" + "\u00e4" * 64 + ".com/"},
            422,
            "runner_config_invalid",
            id="bad_idna",
        ),
        pytest.param(
            {"allow_private_network": "yes"}, 422, "invalid_request", id="bool_not_strict"
        ),
        pytest.param({"max_runners": 3.0}, 422, "invalid_request", id="int_as_float"),
        pytest.param({"max_runners": "3"}, 422, "invalid_request", id="int_as_string"),
        pytest.param(
            {"error_policy": {"max_attempts": "3"}}, 422, "invalid_request", id="policy_strict"
        ),
        pytest.param(
            {"min_runners": 5, "max_runners": 2}, 422, "runner_config_invalid", id="max_below_min"
        ),
        pytest.param(
            {"request_lifespan": 295}, 422, "runner_config_invalid", id="lifespan_over_host"
        ),
        pytest.param({"request_lifespan": 901}, 422, "invalid_request", id="lifespan_over_lambda"),
        pytest.param(
            {"url": "ftp://runner.example.com"}, 422, "runner_config_invalid", id="ftp_url"
        ),
        pytest.param({"url": "not a url"}, 422, "runner_config_invalid", id="not_url"),
        pytest.param(
            {"url": "http://10.0.0.7/x"}, 422, "runner_config_url_blocked", id="private_literal"
        ),
        pytest.param(
            {"url": "https://internal.example.com"},
            422,
            "runner_config_url_blocked",
            id="private_dns",
        ),
        pytest.param(
            {"url": "http://169.254.169.254/latest"},
            422,
            "runner_config_url_blocked",
            id="metadata",
        ),
        pytest.param(
            {"url": "http://169.254.169.254/", "allow_private_network": True},
            422,
            "runner_config_url_blocked",
            id="metadata_even_if_private_allowed",
        ),
        pytest.param(
            {"url": "https://mixed.example.com", "allow_private_network": True},
            422,
            "runner_config_url_blocked",
            id="one_bad_address_refuses_host",
        ),
        pytest.param(
            {"url": "http://user:pw@runner.example.com"},
            422,
            "runner_config_url_blocked",
            id="credentials_in_url",
        ),
        pytest.param(
            {"url": "https://\u2603.example.com"},
            422,
            "runner_config_url_blocked",
            id="idna2008_refuses_symbol",
        ),
        pytest.param({"unknown": 1}, 422, "invalid_request", id="unknown_field"),
        pytest.param({"max_runners": "many"}, 422, "invalid_request", id="wrong_type"),
    ],
)
def test_put_runner_config_refusals(
    world: World, body: dict[str, Any], status: int, code: str
) -> None:
    answer = world.put_config(**body)
    err = assert_error(answer, status, code)
    assert world.deps.runner_configs.get(POOL) is None
    assert "Traceback" not in json.dumps(err)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {"url": "http://10.0.0.7/x", "allow_private_network": True}, id="private_allowed"
        ),
        pytest.param({"url": "https://unresolvable.example.com"}, id="dns_not_yet"),
        pytest.param(
            {"url": "http://127.0.0.1:9/", "allow_private_network": True},
            id="loopback_outside_lambda",
        ),
        pytest.param({"headers": {"x-a": "a b\tc", "x-empty": ""}}, id="header_inner_spaces"),
    ],
)
def test_put_runner_config_accepted(world: World, body: dict[str, Any]) -> None:
    assert world.put_config(**body)["statusCode"] == 200


def test_loopback_refused_when_running_in_lambda() -> None:
    check = make_url_check(fake_resolver, allow_loopback=False)
    assert check("http://127.0.0.1:9/", True) is not None
    assert check("https://runner.example.com", False) is None


def test_runner_config_not_found_and_delete(world: World) -> None:
    assert_error(world.call("GET", "/runner-configs/ns/echo"), 404, "runner_config_not_found")
    assert_error(world.call("DELETE", "/runner-configs/ns/echo"), 404, "runner_config_not_found")
    world.put_config()
    deleted = world.call("DELETE", "/runner-configs/ns/echo")
    assert deleted["statusCode"] == 204
    assert_error(world.call("GET", "/runner-configs/ns/echo"), 404, "runner_config_not_found")


def test_list_runner_configs_carries_pool_error_per_entry(world: World) -> None:
    world.put_config("echo")
    world.put_config("other")
    world.tracker.report_error(POOL, HTTP_503)
    answer = world.call("GET", "/runner-configs", query={"namespace": "ns"})
    assert answer["statusCode"] == 200
    entries = {e["runner_name"]: e for e in response_json(answer)["runner_configs"]}
    assert entries["echo"]["pool_error"]["error"] == HTTP_503.to_json()
    assert entries["echo"]["pool_error"]["count"] == 1
    assert "pool_error" not in entries["other"]
    assert len(world.counting.batched_calls) == 1
    assert sorted(p.runner_name for p in world.counting.batched_calls[0]) == ["echo", "other"]


def test_get_runner_config_shows_pool_error(world: World) -> None:
    world.put_config()
    world.tracker.report_error(POOL, HTTP_503)
    body = response_json(world.call("GET", "/runner-configs/ns/echo"))
    assert body["pool_error"]["error"]["status_code"] == 503


# --- request-level errors ---------------------------------------------------------------------


DEEP = "[" * 1000 + "]" * 1000
UNSUPPORTED = (415, "unsupported_media_type")


def typed(raw_body: str | bytes, content_type: str) -> dict[str, Any]:
    """``World.call`` arguments for a raw body sent with its own Content-Type."""
    return {"raw_body": raw_body, "content_type": content_type}


BAD_BODIES = [
    pytest.param({"raw_body": "{not json"}, 400, "malformed_body", id="bad_json"),
    pytest.param(typed(b"\xff\xfe", "application/json"), 400, "malformed_body", id="bad_utf8"),
    pytest.param(typed("url=x", "text/plain"), *UNSUPPORTED, id="text_plain"),
    pytest.param({"raw_body": "[1, 2]"}, 422, "invalid_request", id="array_body"),
    pytest.param({}, 422, "invalid_request", id="missing_body"),
    pytest.param(
        typed("--x\r\n", "multipart/form-data"), *UNSUPPORTED, id="multipart_without_boundary"
    ),
    pytest.param(
        typed("--x--\r\n", "multipart/form-data; boundary=x"), *UNSUPPORTED, id="multipart"
    ),
    pytest.param(typed("a=1", "application/x-www-form-urlencoded"), *UNSUPPORTED, id="form"),
    pytest.param({"raw_body": DEEP}, 422, "json_too_deep", id="nested_1000_deep"),
    pytest.param({"raw_body": '{"a": "[[[[", "b": ' + DEEP + "}"}, 422, "json_too_deep", id="deep"),
    pytest.param({"raw_body": '{"input": NaN}'}, 422, "non_finite_number", id="nan"),
    pytest.param({"raw_body": '{"input": Infinity}'}, 422, "non_finite_number", id="inf"),
    pytest.param({"raw_body": '{"input": -Infinity}'}, 422, "non_finite_number", id="neg_inf"),
    pytest.param({"raw_body": '{"input": [1e400]}'}, 422, "non_finite_number", id="overflow"),
    pytest.param({"raw_body": '{"input": -1e400}'}, 422, "non_finite_number", id="neg_overflow"),
]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("PUT", "/runner-configs/ns/echo", id="put_config"),
        pytest.param("POST", "/actors", id="create_actor"),
        pytest.param("POST", "/actors/a1/messages", id="send_message"),
    ],
)
@pytest.mark.parametrize(("kwargs", "status", "code"), BAD_BODIES)
def test_bad_bodies_on_every_body_route_are_4xx_and_store_nothing(
    world: World, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    world.put_config(name="other")
    world.create_actor(runner_name="other")
    answer = world.call(method, path, headers={"Idempotency-Key": "k1"}, **kwargs)
    assert_error(answer, status, code)
    assert world.deps.runner_configs.get(POOL) is None
    assert world.deps.messages.get("a1", "k1") is None
    assert world.queue.sent == []
    # The key was never used: the same key with a good body is accepted, not a 409.
    ok = world.call("POST", "/actors/a1/messages", headers={"Idempotency-Key": "k1"}, body={})
    assert ok["statusCode"] == 202


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json; charset=utf-8", id="charset"),
        pytest.param("Application/JSON", id="case"),
        pytest.param("application/merge-patch+json", id="plus_json"),
        pytest.param(None, id="none"),
    ],
)
def test_json_content_types_are_accepted(world: World, content_type: str | None) -> None:
    body = {"url": "https://runner.example.com"}
    answer = world.call("PUT", "/runner-configs/ns/echo", body=body, content_type=content_type)
    assert answer["statusCode"] == 200, answer


def test_nesting_at_the_limit_is_accepted(world: World) -> None:
    from functions.api.app import MAX_JSON_DEPTH

    world.put_config()
    world.create_actor()
    inner = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    assert (
        world.call("POST", "/actors/a1/messages", raw_body='{"input": ' + inner + "}")["statusCode"]
        == 202
    )
    deeper = "[" + inner + "]"
    answer = world.call("POST", "/actors/a1/messages", raw_body='{"input": ' + deeper + "}")
    assert_error(answer, 422, "json_too_deep")


def test_bad_base64_is_400(world: World) -> None:
    event = aws_proxy_event("PUT", "/runner-configs/ns/echo", body={"url": "https://x.io"})
    event["body"] = "%%%not-base64"
    assert_error(handle(event, None, world.deps), 400, "malformed_body")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", "/nope", 404, "route_not_found", id="unknown_path"),
        pytest.param("PATCH", "/actors/a1", 404, "route_not_found", id="unknown_method"),
        pytest.param(
            "GET", "/runner-configs/ns/bad%20name", 422, "invalid_request", id="bad_path_param"
        ),
        pytest.param("GET", "/runner-configs", 422, "invalid_request", id="missing_namespace"),
        pytest.param("GET", "/actors/-bad", 422, "invalid_request", id="bad_actor_id"),
    ],
)
def test_routing_errors(world: World, method: str, path: str, status: int, code: str) -> None:
    assert_error(world.call(method, path), status, code)


# --- actors and enrichment --------------------------------------------------------------------


def test_create_actor_requires_runner_config(world: World) -> None:
    assert_error(world.create_actor(), 409, "pool_not_configured")
    world.put_config()
    created = world.create_actor()
    assert created["statusCode"] == 201
    assert response_header(created, "Location") == "/actors/a1"
    body = response_json(created)
    assert body["actor_id"] == "a1"
    assert "error" not in body
    assert_error(world.create_actor(), 409, "actor_exists")


def test_create_actor_generates_an_id(world: World) -> None:
    world.put_config()
    answer = world.call("POST", "/actors", body={"namespace": "ns", "runner_name": "echo"})
    assert answer["statusCode"] == 201
    assert response_json(answer)["actor_id"] == "id1"


def test_get_missing_actor(world: World) -> None:
    assert_error(world.call("GET", "/actors/zz"), 404, "actor_not_found")


@pytest.mark.parametrize(
    ("reason", "pool_broken", "expected_code"),
    [
        pytest.param(None, False, None, id="healthy_no_error"),
        pytest.param(None, True, None, id="no_reason_pool_broken_still_none"),
        pytest.param(NoCapacity(), False, "no_capacity", id="no_capacity_pool_healthy"),
        pytest.param(NoCapacity(), True, "pool_error", id="no_capacity_becomes_pool_error"),
        pytest.param(
            RunnerNoResponse(runner_id="r9"),
            True,
            "runner_no_response",
            id="runner_no_response_kept",
        ),
    ],
)
def test_actor_error_enrichment(
    world: World, reason: Any, pool_broken: bool, expected_code: str | None
) -> None:
    world.put_config()
    world.create_actor()
    if reason is not None:
        world.actors.set_failure_reason("a1", reason)
    if pool_broken:
        world.tracker.report_error(POOL, HTTP_503)
        world.clock.t += 1
        world.tracker.report_error(POOL, HTTP_503)
    body = response_json(world.call("GET", "/actors/a1"))
    if expected_code is None:
        assert "error" not in body
        return
    assert body["error"]["code"] == expected_code
    if expected_code == "pool_error":
        assert body["error"]["error"] == HTTP_503.to_json()
        assert body["error"]["count"] == 2
        assert body["error"]["first_seen"] < body["error"]["last_seen"]
    if expected_code == "runner_no_response":
        assert body["error"]["runner_id"] == "r9"


def test_list_actors_enriches_with_one_batched_lookup(world: World) -> None:
    world.put_config("echo")
    world.put_config("other")
    for i in range(4):
        world.create_actor(f"a{i}", runner_name="echo" if i % 2 == 0 else "other")
        world.actors.set_failure_reason(f"a{i}", NoCapacity())
    world.tracker.report_error(POOL, HTTP_503)
    world.counting.batched_calls.clear()
    world.counting.single_calls = 0
    answer = world.call("GET", "/actors", query={"namespace": "ns", "limit": "3"})
    assert answer["statusCode"] == 200
    body = response_json(answer)
    codes = {a["actor_id"]: a["error"]["code"] for a in body["actors"]}
    assert codes == {"a0": "pool_error", "a1": "no_capacity", "a2": "pool_error"}
    assert len(world.counting.batched_calls) == 1
    assert world.counting.single_calls == 0
    nxt = world.call("GET", "/actors", query={"namespace": "ns", "cursor": body["next_cursor"]})
    assert [a["actor_id"] for a in response_json(nxt)["actors"]] == ["a3"]


def test_list_actors_bad_cursor_is_4xx(world: World) -> None:
    answer = world.call("GET", "/actors", query={"namespace": "ns", "cursor": "_w"})
    assert_error(answer, 422, "invalid_request")


# --- messages ---------------------------------------------------------------------------------


@pytest.fixture
def ready(world: World) -> World:
    world.put_config()
    world.create_actor()
    return world


def test_post_message_enqueues_and_answers_202(ready: World) -> None:
    answer = ready.call("POST", "/actors/a1/messages", body={"input": {"n": 1}})
    assert answer["statusCode"] == 202
    body = response_json(answer)
    assert body["status"] == "pending"
    assert body["input"] == {"n": 1}
    assert response_header(answer, "Location") == f"/actors/a1/messages/{body['message_id']}"
    assert ready.queue.sent == [MessageEnvelope(actor_id="a1", message_id=body["message_id"])]
    got = ready.call("GET", f"/actors/a1/messages/{body['message_id']}")
    assert response_json(got)["status"] == "pending"


def test_idempotency_key(ready: World) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = ready.call("POST", "/actors/a1/messages", body={"input": 1}, headers=headers)
    again = ready.call("POST", "/actors/a1/messages", body={"input": 1}, headers=headers)
    assert response_json(first)["message_id"] == response_json(again)["message_id"] == "order-42"
    assert again["statusCode"] == 202
    other = ready.call("POST", "/actors/a1/messages", body={"input": 2}, headers=headers)
    assert_error(other, 409, "idempotency_key_reused")
    bad = ready.call(
        "POST", "/actors/a1/messages", body={"input": 2}, headers={"Idempotency-Key": "a b"}
    )
    assert_error(bad, 422, "invalid_request")


def test_message_errors(ready: World) -> None:
    assert_error(ready.call("POST", "/actors/zz/messages", body={}), 404, "actor_not_found")
    assert_error(ready.call("GET", "/actors/a1/messages/nope"), 404, "message_not_found")
    ready.actors.set_status("a1", "stopped")
    assert_error(ready.call("POST", "/actors/a1/messages", body={}), 409, "actor_stopped")


# --- the gateway ------------------------------------------------------------------------------


def test_gateway_fails_fast_after_first_check(ready: World) -> None:
    ready.tracker.report_error(POOL, HTTP_503)
    answer = post_wait(ready)
    body = assert_error(answer, 503, "actor_runner_failed")
    assert body["group"] == "guard"
    assert body["metadata"]["actor_id"] == "a1"
    assert body["metadata"]["pool_error"]["error"] == HTTP_503.to_json()
    assert body["metadata"]["message_id"] == ready.queue.sent[0].message_id
    assert response_header(answer, "Retry-After") == "60"
    assert ready.clock.t == pytest.approx(1.0)  # virtual: answered at the first check


def test_gateway_error_appearing_later_is_seen_on_the_2s_grid(ready: World) -> None:
    ready.clock.at(2.5, lambda: ready.tracker.report_error(POOL, HTTP_503))
    assert_error(post_wait(ready), 503, "actor_runner_failed")
    assert ready.clock.t == pytest.approx(3.0)


def test_gateway_returns_the_result(ready: World) -> None:
    def host() -> None:
        ready.host_finishes("a1", ready.queue.sent[0].message_id, {"answer": 42})

    ready.clock.at(0.6, host)
    answer = post_wait(ready)
    assert answer["statusCode"] == 200
    body = response_json(answer)
    assert body["status"] == "succeeded"
    assert body["result"] == {"answer": 42}
    assert ready.clock.t == pytest.approx(0.75)  # next 0.25 s poll after the host finished


def test_gateway_returns_a_failed_message_as_200(ready: World) -> None:
    def host() -> None:
        mid = ready.queue.sent[0].message_id
        now = ready.clock.now()
        ready.messages.claim("a1", mid, owner="host", lease_s=60, now=now)
        ready.messages.finish_failure(
            "a1",
            mid,
            owner="host",
            status="failed",
            error={"code": "actor_failed", "error_code": "boom", "message": "x"},
            disposition="discard",
            now=now,
        )

    ready.clock.at(4.1, host)
    body = response_json(post_wait(ready))
    assert body["status"] == "failed"
    assert body["error"]["error_code"] == "boom"


def test_gateway_times_out(ready: World) -> None:
    body = assert_error(post_wait(ready), 503, "actor_ready_timeout")
    assert body["metadata"]["waited_s"] == pytest.approx(25.0)
    assert ready.clock.t == pytest.approx(25.0)


def test_gateway_timeout_is_configurable_and_bounded_by_lambda_time() -> None:
    w = make_world(gateway_ready_timeout_s=5.0)
    w.put_config()
    w.create_actor()
    assert_error(post_wait(w), 503, "actor_ready_timeout")
    assert w.clock.t == pytest.approx(5.0)

    class Ctx:
        def get_remaining_time_in_millis(self) -> int:
            return 3000

    w2 = make_world()
    w2.put_config()
    w2.create_actor()
    w2.context = Ctx()
    assert_error(post_wait(w2), 503, "actor_ready_timeout")
    assert w2.clock.t == pytest.approx(2.0)  # 3 s left minus the 1 s margin


def test_gateway_checks_pool_on_the_configured_schedule() -> None:
    w = make_world(gateway_first_check_s=0.5, gateway_check_interval_s=1.0)
    w.put_config()
    w.create_actor()
    w.clock.at(1.2, lambda: w.tracker.report_error(POOL, HTTP_503))
    assert_error(post_wait(w), 503, "actor_runner_failed")
    assert w.clock.t == pytest.approx(1.5)


def test_without_wait_a_broken_pool_still_accepts(ready: World) -> None:
    ready.tracker.report_error(POOL, HTTP_503)
    answer = ready.call("POST", "/actors/a1/messages", body={"input": 1})
    assert answer["statusCode"] == 202
    assert ready.clock.sleeps == []


def test_unexpected_exception_is_a_500_in_the_api_shape(ready: World) -> None:
    def boom(envelope: MessageEnvelope) -> None:
        raise RuntimeError("queue exploded")

    ready.queue.send = boom  # type: ignore[method-assign]
    answer = ready.call("POST", "/actors/a1/messages", body={"input": 1})
    body = assert_error(answer, 500, "server_error")
    assert "exploded" not in json.dumps(body)


def test_other_requests_are_served_while_a_gateway_waits(ready: World) -> None:
    entered, release = threading.Event(), threading.Event()
    virtual_sleep = ready.deps.sleep

    def blocking_sleep(seconds: float) -> None:
        entered.set()
        assert release.wait(10)
        virtual_sleep(seconds)

    ready.deps.sleep = blocking_sleep
    ready.tracker.report_error(POOL, HTTP_503)
    answers: dict[str, dict[str, Any]] = {}
    waiter = threading.Thread(target=lambda: answers.update(wait=post_wait(ready)))
    waiter.start()
    try:
        assert entered.wait(10)
        got = ready.call("GET", "/actors/a1")  # not blocked behind the waiting request
        assert got["statusCode"] == 200
        assert response_json(got)["actor_id"] == "a1"
    finally:
        release.set()
        waiter.join(10)
    assert_error(answers["wait"], 503, "actor_runner_failed")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/actors/a1/messages", {"input": "x" * 300_000}, id="message_input"),
        pytest.param(
            "/actors",
            {"namespace": "ns", "runner_name": "echo", "actor_id": "big", "state": ["y" * 300_000]},
            id="actor_state",
        ),
        pytest.param(
            "/runner-configs/ns/echo",
            {"url": "https://runner.example.com", "headers": {"a": "z" * 9000}},
            id="header_value",
        ),
    ],
)
def test_oversized_values_are_422_not_a_store_failure(
    ready: World, path: str, body: dict[str, Any]
) -> None:
    method = "PUT" if path.startswith("/runner-configs") else "POST"
    assert_error(ready.call(method, path, body=body), 422, "invalid_request")


@pytest.mark.parametrize(
    ("reply_to", "status"),
    [
        pytest.param("runner-kit-replies-a", 202, id="queue_name"),
        pytest.param("runner-kit-replies-a.fifo", 202, id="fifo_name"),
        pytest.param(
            "https://sqs.us-east-1.amazonaws.com/123456789012/runner-kit-replies-a", 202, id="url"
        ),
        pytest.param("http://169.254.169.254/latest", 422, id="not_a_queue"),
        pytest.param("bad name", 422, id="space"),
        pytest.param("", 422, id="empty"),
    ],
)
def test_reply_to_must_name_a_queue(ready: World, reply_to: str, status: int) -> None:
    answer = ready.call("POST", "/actors/a1/messages", body={"input": 1, "reply_to": reply_to})
    assert answer["statusCode"] == status, answer


def test_the_unmodified_sam_sample_event_gets_an_api_answer(world: World) -> None:
    answer = handle(sample_event(), None, world.deps)  # POST /path/to/resource
    assert_error(answer, 404, "route_not_found")


@pytest.mark.parametrize("name", ["Idempotency-Key", "idempotency-key", "IDEMPOTENCY-KEY"])
def test_idempotency_header_is_case_insensitive(ready: World, name: str) -> None:
    answer = ready.call("POST", "/actors/a1/messages", body={"input": 1}, headers={name: "k-1"})
    assert response_json(answer)["message_id"] == "k-1"


def _times(value: Any, key: str = "") -> list[tuple[str, Any]]:
    """Every ``(key, value)`` of ``value`` whose key names a time, at any depth."""
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _times(v, k)]
    if isinstance(value, list):
        return [found for item in value for found in _times(item, key)]
    return [(key, value)] if key.endswith(("_at", "_seen")) and value is not None else []


@pytest.mark.parametrize("offset_s", [0.0, 1.000006], ids=["whole_second", "microseconds"])
def test_every_time_the_api_sends_is_utc_microseconds_and_z(offset_s: float) -> None:
    w = make_world()
    w.clock.advance(offset_s)
    w.put_config()
    w.create_actor()
    w.tracker.report_error(POOL, HTTP_503)
    w.actors.set_failure_reason("a1", NoCapacity())  # its error is now the pool's pool_error
    headers = {"Idempotency-Key": "m"}
    answers = [
        w.call("POST", "/actors/a1/messages", body={"input": 1}, headers=headers),
        w.call("GET", "/runner-configs/ns/echo"),
        w.call("GET", "/runner-configs", query={"namespace": "ns"}),
        w.call("GET", "/actors/a1"),
        w.call("GET", "/actors", query={"namespace": "ns"}),
        w.call("GET", "/actors/a1/messages/m"),
        w.call("GET", "/actors/a1/messages"),
        post_wait(w),  # 503 actor_runner_failed: metadata.pool_error
    ]
    times = [found for answer in answers for found in _times(response_json(answer))]
    keys = {key for key, _ in times}
    assert {"created_at", "updated_at", "first_seen", "last_seen"} <= keys
    expected = (START + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for key, value in times:
        # (an actor's updated_at after set_failure_reason is the store's own stamp)
        if key != "updated_at":
            assert value == expected, (key, value)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", value), (key, value)


def _summary(w: World, method: str, path: str, **kw: Any) -> Invocation:
    event = aws_proxy_event(method, path, **kw)
    invocation = Invocation("api")
    summarize(event, serve(event, None, w.deps), invocation)
    return invocation


@pytest.mark.parametrize(
    ("pool_failing", "code", "metric"),
    [
        pytest.param(True, "actor_runner_failed", "GatewayRunnerFailed", id="runner_failed"),
        pytest.param(False, "actor_ready_timeout", "GatewayReadyTimeout", id="ready_timeout"),
    ],
)
def test_the_gateway_metric_comes_from_the_answer_code(
    ready: World, pool_failing: bool, code: str, metric: str
) -> None:
    if pool_failing:
        ready.tracker.report_error(POOL, HTTP_503)
    body = {"input": "hi"}
    invocation = _summary(ready, "POST", "/actors/a1/messages", body=body, query={"wait": "true"})
    assert invocation.summary["status_code"] == 503
    assert invocation.summary["code"] == code
    assert [(m.name, m.value) for m in invocation.metrics] == [(metric, 1)]


@pytest.mark.parametrize(
    ("method", "path", "kw", "status", "code"),
    [
        pytest.param("GET", "/actors/a1", {}, 200, None, id="ok"),
        pytest.param("GET", "/actors/nobody", {}, 404, "actor_not_found", id="route_error"),
        pytest.param("GET", "/nowhere", {}, 404, "route_not_found", id="no_route"),
        pytest.param("POST", "/actors", {"body": {}}, 422, "invalid_request", id="validation"),
        pytest.param("POST", "/actors", {"raw_body": DEEP}, 422, "json_too_deep", id="screen"),
    ],
)
def test_the_summary_names_the_error_code_and_counts_no_gateway_metric(
    ready: World, method: str, path: str, kw: dict[str, Any], status: int, code: str | None
) -> None:
    invocation = _summary(ready, method, path, **kw)
    assert invocation.summary["status_code"] == status
    assert invocation.summary["code"] == code
    assert invocation.metrics == []
