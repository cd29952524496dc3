"""docs/openapi.json is current, and a property-based run over it finds no server error.

The run draws every operation's path, query, header and body values from the document's own
schemas (``schema_strategy``: the JSON Schema subset the document uses), mixed with off-schema
values, and sends them as SAM-shaped proxy
events to ``lambda_handler`` on the moto server. Any 5xx fails. Bounded: a fixed number of
examples per operation, no example database, the gateway's wait cut to a fraction of a second.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.settings import Settings
from core.errors import GATEWAY_CODES
from functions.api.openapi import OPENAPI_PATH, main, render
from tests.helpers.api_stack import call, create_actor, put_config
from tests.helpers.api_stack import stack as stack
from tests.helpers.apigw import aws_proxy_event, response_json

pytestmark = pytest.mark.integration

DOC: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
EXAMPLES_PER_OPERATION = 50


def test_openapi_document_is_current() -> None:
    assert OPENAPI_PATH.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is stale: run python -m functions.api.openapi"
    )
    assert main(["--check"]) == 0


def test_check_fails_on_a_stale_file(tmp_path: Any) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert main(["--check", "--out", str(stale)]) == 1


def test_document_covers_every_route_and_error_shape() -> None:
    assert set(DOC["paths"]) == {
        "/runner-configs",
        "/runner-configs/{namespace}/{runner_name}",
        "/actors",
        "/actors/{actor_id}",
        "/actors/{actor_id}/resume",
        "/actors/{actor_id}/messages",
        "/actors/{actor_id}/messages/{message_id}",
        "/actors/{actor_id}/messages/{message_id}/retry",
    }
    assert set(DOC["paths"]["/actors/{actor_id}"]) >= {"get", "delete"}
    assert set(DOC["paths"]["/actors/{actor_id}/messages"]) >= {"get", "post"}
    listing = DOC["paths"]["/actors/{actor_id}/messages"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"actor_id", "status", "limit", "cursor"}
    assert "409" in DOC["paths"]["/actors/{actor_id}/resume"]["post"]["responses"]
    send = DOC["paths"]["/actors/{actor_id}/messages"]["post"]
    assert {"202", "200", "503"} <= set(send["responses"])
    ref = send["responses"]["503"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ApiErrorBody")


def _resolve(schema: Any) -> Any:
    """Inline ``#/components/schemas/...`` references (the document has no cycles)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return _resolve(DOC["components"]["schemas"][ref.rsplit("/", 1)[-1]])
        return {k: _resolve(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolve(v) for v in schema]
    return schema


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method.upper(), op)
        for path, methods in sorted(DOC["paths"].items())
        for method, op in sorted(methods.items())
    ]


_SEGMENT = st.text(
    alphabet=st.characters(exclude_characters="/?#", exclude_categories=["Cs"]),
    min_size=1,
    max_size=12,
)
_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


def schema_strategy(schema: Any) -> st.SearchStrategy[Any]:
    """Values valid for ``schema`` (the subset pydantic emits into this document)."""
    schema = _resolve(schema)
    if not isinstance(schema, dict) or not schema:
        return _ANY_JSON
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    if "anyOf" in schema:
        return st.one_of([schema_strategy(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "string":
        lo, hi = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda v: lo <= len(v) <= schema.get("maxLength", 10**9)
            )
        return st.text(min_size=lo, max_size=max(lo, hi))
    if kind == "integer":
        return st.integers(
            min_value=int(schema.get("minimum", -1000)), max_value=int(schema.get("maximum", 1000))
        )
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1000.0))
        return st.floats(
            min_value=low,
            max_value=schema.get("maximum", 1000.0),
            exclude_min="exclusiveMinimum" in schema,
            allow_nan=False,
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(schema_strategy(schema.get("items", {})), max_size=3)
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        extra = schema.get("additionalProperties", True)
        if not props and isinstance(extra, dict):
            return st.dictionaries(
                st.text(min_size=1, max_size=8),
                schema_strategy(extra),
                max_size=min(schema.get("maxProperties", 3), 3),
            )
        return st.fixed_dictionaries(
            {k: schema_strategy(v) for k, v in props.items() if k in required},
            optional={k: schema_strategy(v) for k, v in props.items() if k not in required},
        )
    return _ANY_JSON


_KNOWN = {"namespace": ["ns"], "runner_name": ["echo"], "actor_id": ["a1"]}


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _param(param: dict[str, Any]) -> st.SearchStrategy[str]:
    schema = _resolve(param["schema"])
    valid = schema_strategy(schema).filter(lambda v: v is not None).map(_as_text)
    known = st.sampled_from(_KNOWN.get(param["name"], ["x"]))
    if param["in"] == "path":
        return st.one_of(known, valid.filter(lambda v: "/" not in v and v != ""), _SEGMENT)
    return st.one_of(known, valid, _SEGMENT)


@pytest.fixture
def seeded(stack: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A pool and an actor the generated requests can hit, and a gateway that waits briefly."""
    from tests.helpers.api_stack import _clear_caches

    monkeypatch.setenv("GATEWAY_READY_TIMEOUT_S", "0.05")
    monkeypatch.setenv("INIT_TIMEOUT_S", "0.04")
    monkeypatch.setenv("GATEWAY_FIRST_CHECK_S", "0.02")
    monkeypatch.setenv("GATEWAY_POLL_INTERVAL_S", "0.02")
    _clear_caches()
    assert put_config()["statusCode"] == 200
    assert create_actor()["statusCode"] == 201
    return stack


@pytest.mark.parametrize(
    ("path", "method", "op"),
    [pytest.param(p, m, o, id=o["operationId"]) for p, m, o in _operations()],
)
def test_no_server_error_for_any_input(
    seeded: Settings, path: str, method: str, op: dict[str, Any]
) -> None:
    params = op.get("parameters", [])
    body_schema = (
        _resolve(op["requestBody"]["content"]["application/json"]["schema"])
        if "requestBody" in op
        else None
    )
    seen: set[int] = set()

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        url = path
        query: dict[str, str | list[str]] = {}
        headers: dict[str, str] = {}
        for param in params:
            if param["in"] != "path" and not data.draw(
                st.booleans(), label="send " + param["name"]
            ):
                continue
            value = data.draw(_param(param), label=param["name"])
            if param["in"] == "path":
                url = url.replace("{" + param["name"] + "}", value)
            elif param["in"] == "query":
                query[param["name"]] = value
            else:
                headers[param["name"]] = value
        raw: str | None = None
        if body_schema is not None:
            raw = data.draw(
                st.one_of(
                    schema_strategy(body_schema).map(json.dumps),
                    _ANY_JSON.map(json.dumps),
                    st.text(max_size=20),
                ),
                label="body",
            )
        event = aws_proxy_event(method, url, raw_body=raw, query=query, headers=headers)
        from functions.api.app import lambda_handler

        answer = lambda_handler(event, None)
        status = answer["statusCode"]
        seen.add(status)
        body = response_json(answer) if status >= 400 else None
        if body is not None:
            assert set(body) == {"group", "code", "message", "metadata"}, answer
        # The gateway's documented answers (?wait=true on a real actor) are the only 5xx allowed:
        # 503 actor_ready_timeout / actor_runner_failed say "not yet", they are not server errors.
        guard = status == 503 and body is not None and body["code"] in GATEWAY_CODES
        assert status < 500 or guard, (method, url, query, headers, raw, answer)

    run()
    assert seen, "no request was sent"


def test_known_good_requests_still_work(seeded: Settings) -> None:
    """The seeded data is intact after the fuzzing fixtures (sanity of the harness)."""
    assert call("GET", "/actors/a1")["statusCode"] == 200
