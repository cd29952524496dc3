"""The error model: codes are wire format, JSON round-trips, unknown codes survive."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import errors as E
from core import exceptions as X
from core.truncate import truncate_utf8

GOLDEN_CODES = [
    "serverless_http_error",
    "serverless_stream_ended_early",
    "serverless_connection_error",
    "serverless_invalid_base64",
    "serverless_invalid_payload",
    "internal_error",
    "no_capacity",
    "runner_no_response",
    "pool_error",
    "actor_failed",
    "actor_runner_failed",
    "actor_ready_timeout",
    "durable_store_required:pool_error_store",
    "durable_store_required:actor_store",
    "durable_store_required:runner_config_store",
    "durable_store_required:idempotency_store",
    "missing_execution_id",
    "execution_busy",
    "execution_lease_lost",
    "store_commit_failed",
    "store_read_failed",
    "record_undecodable",
    "actor_deleted",
]

CODE_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*(:[a-z][a-z0-9]*(_[a-z0-9]+)*)?$")


def test_golden_list_of_codes() -> None:
    assert list(E.ALL_CODES) == GOLDEN_CODES


@pytest.mark.parametrize("code", GOLDEN_CODES + list(E.CONNECTION_REASONS))
def test_code_is_snake_case(code: str) -> None:
    assert CODE_RE.match(code), code


# Every known pool variant's exact wire JSON: renaming a code or a field fails here.
POOL_WIRES: list[dict[str, Any]] = [
    {"code": "serverless_http_error", "status_code": 503, "body": "down"},
    {"code": "serverless_stream_ended_early"},
    {"code": "serverless_connection_error", "message": "refused", "reason": "connect"},
    {"code": "serverless_invalid_base64", "raw_payload": "!!"},
    {"code": "serverless_invalid_payload", "message": "not json", "raw_payload": "x"},
    {"code": "internal_error", "message": "boom"},
]


def variant_of(wire: dict[str, Any]) -> Any:
    """The variant named after the code (``serverless_http_error`` -> ``ServerlessHttpError``),
    built from the wire's fields."""
    cls = getattr(E, "".join(part.title() for part in wire["code"].split("_")))
    return cls(**{key: value for key, value in wire.items() if key != "code"})


@pytest.mark.parametrize("wire", POOL_WIRES, ids=lambda wire: wire["code"])
def test_pool_error_round_trip(wire: dict[str, Any]) -> None:
    err = variant_of(wire)
    assert err.to_json() == wire
    assert list(err.to_json()) == list(wire)  # code first, field order stable
    assert E.decode_pool_error(wire) == err
    assert E.decode_pool_error(json.dumps(wire)) == err
    assert E.decode_pool_error(json.dumps(wire).encode()) == err


def test_every_pool_code_has_a_variant() -> None:
    assert [wire["code"] for wire in POOL_WIRES] == list(E.POOL_ERROR_CODES)


NO_CAPACITY = {"code": "no_capacity"}
NO_RESPONSE = {"code": "runner_no_response", "runner_id": "r1"}
ACTOR_FAILED = {"code": "actor_failed", "error_code": "bad_input", "message": "nope"}


@pytest.mark.parametrize(
    ("decode", "wire"),
    [
        pytest.param(E.decode_failure_reason, NO_CAPACITY, id="reason_no_capacity"),
        pytest.param(E.decode_failure_reason, NO_RESPONSE, id="reason_no_response"),
        pytest.param(E.decode_actor_error, NO_CAPACITY, id="actor_no_capacity"),
        pytest.param(E.decode_actor_error, NO_RESPONSE, id="actor_no_response"),
        pytest.param(E.decode_actor_error, ACTOR_FAILED, id="actor_failed"),
    ],
)
def test_actor_values_round_trip(decode: Any, wire: dict[str, Any]) -> None:
    err = variant_of(wire)
    assert err.to_json() == wire
    assert decode(wire) == err


def test_pool_error_view_round_trip() -> None:
    err = E.PoolErrorView(
        error=E.ServerlessHttpError(status_code=502, body=""),
        first_seen="2026-01-01T00:00:00Z",
        last_seen="2026-01-01T00:01:00Z",
        count=4,
    )
    wire = {
        "code": "pool_error",
        "error": {"code": "serverless_http_error", "status_code": 502, "body": ""},
        "first_seen": "2026-01-01T00:00:00Z",
        "last_seen": "2026-01-01T00:01:00Z",
        "count": 4,
    }
    assert err.to_json() == wire
    assert E.decode_actor_error(wire) == err


def test_pool_error_view_keeps_unknown_inner_code() -> None:
    wire = {
        "code": "pool_error",
        "error": {"code": "future_thing", "x": [1, 2]},
        "first_seen": None,
        "last_seen": None,
        "count": None,
    }
    decoded = E.decode_actor_error(wire)
    assert isinstance(decoded, E.PoolErrorView)
    assert isinstance(decoded.error, E.OtherPoolError)
    assert decoded.to_json() == wire


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("not json", id="not_json"),
        pytest.param("[1,2]", id="array"),
        pytest.param({"status_code": 1}, id="no_code"),
        pytest.param({"code": 7}, id="code_not_string"),
        pytest.param({"code": ""}, id="empty_code"),
        pytest.param({"code": "serverless_http_error"}, id="missing_field"),
        pytest.param(
            {"code": "serverless_http_error", "status_code": "x", "body": ""}, id="wrong_type"
        ),
        pytest.param(b"\xff\xfe", id="bad_bytes"),
    ],
)
def test_malformed_raises_one_typed_error(raw: Any) -> None:
    with pytest.raises(E.ErrorDecodeError):
        E.decode_pool_error(raw)


KNOWN_WITH_NEWER_FIELDS: list[Any] = [
    pytest.param(
        E.decode_pool_error,
        '{"code":"serverless_http_error","status_code":503,"body":"down","retry_after_s":3}',
        id="pool_error_newer_field_last",
    ),
    pytest.param(
        E.decode_pool_error,
        '{"retry_after_s":3,"code":"serverless_http_error","body":"","status_code":503}',
        id="pool_error_newer_field_first_and_reordered",
    ),
    pytest.param(
        E.decode_pool_error,
        '{"code":"serverless_connection_error","message":"m","reason":"connect",'
        '"attempt":{"n":2,"of":[1,2]}}',
        id="connection_error_nested_newer_field",
    ),
    pytest.param(
        E.decode_failure_reason, '{"code":"no_capacity","waited_s":1.5}', id="no_capacity_newer"
    ),
    pytest.param(
        E.decode_actor_error,
        '{"code":"actor_failed","error_code":"boom","message":"m","retryable":false}',
        id="actor_failed_newer_field",
    ),
    pytest.param(
        E.decode_actor_error,
        '{"code":"pool_error","error":{"code":"internal_error","message":"x","trace":"t"},'
        '"first_seen":null,"last_seen":null,"count":null,"pool":"ns/r"}',
        id="pool_error_view_newer_fields_inside_and_out",
    ),
]


@pytest.mark.parametrize(("decode", "text"), KNOWN_WITH_NEWER_FIELDS)
def test_known_codes_with_newer_fields_round_trip_exactly(decode: Any, text: str) -> None:
    value = decode(text)
    assert not isinstance(value, E.OtherPoolError | E.OtherFailureReason | E.OtherActorError)
    assert json.dumps(value.to_json(), separators=(",", ":")) == text
    # And a second pass (decode what we wrote) is stable too.
    again = decode(json.dumps(value.to_json()))
    assert again.to_json() == value.to_json()


def test_newer_field_does_not_change_what_this_build_reads() -> None:
    err = E.decode_pool_error(
        {"code": "serverless_http_error", "status_code": 503, "body": "b", "retry_after_s": 3}
    )
    assert isinstance(err, E.ServerlessHttpError)
    assert (err.status_code, err.body) == (503, "b")
    assert err.summary == "endpoint answered HTTP 503: b"


def test_constructed_errors_keep_code_first() -> None:
    assert list(E.ServerlessHttpError(body="x", status_code=500).to_json()) == [
        "code",
        "status_code",
        "body",
    ]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    code=st.text(min_size=1).filter(
        lambda c: (
            c not in E.POOL_ERROR_CODES
            and c not in E.ACTOR_ERROR_CODES
            and c not in E.FAILURE_REASON_CODES
        )
    ),
    fields=st.dictionaries(st.text().filter(lambda k: k != "code"), json_values, max_size=6),
    code_first=st.booleans(),
)
def test_unknown_codes_round_trip_exactly(
    code: str, fields: dict[str, Any], code_first: bool
) -> None:
    wire = {"code": code, **fields} if code_first else {**fields, "code": code}
    text = json.dumps(wire)
    for decode in (E.decode_pool_error, E.decode_failure_reason, E.decode_actor_error):
        value = decode(text)
        assert value.code == code
        assert json.dumps(value.to_json()) == text


def test_body_is_truncated_on_a_character_boundary() -> None:
    body = "a" * 511 + "é" + "tail"  # é is 2 bytes and straddles byte 512
    err = E.ServerlessHttpError(status_code=500, body=body)
    assert err.body == "a" * 511
    assert len(err.body.encode()) <= 512
    err2 = E.ServerlessInvalidBase64(raw_payload=b"\xff" * 600)
    assert len(err2.raw_payload.encode()) <= 512


@given(st.text())
def test_truncate_never_raises_is_prefix_and_fits(text: str) -> None:
    out = truncate_utf8(text, 512)
    encoded = out.encode("utf-8")  # valid UTF-8 by construction
    assert len(encoded) <= 512
    assert text.startswith(out)
    if len(text.encode()) <= 512:
        assert out == text
    else:  # longest prefix: one more character would not fit
        assert len(text[: len(out) + 1].encode()) > 512


@given(
    st.text(alphabet=st.characters(codec=None, categories=["Cs", "Lo", "So"])),
    st.integers(min_value=-5, max_value=600),
)
def test_truncate_handles_surrogates_and_any_limit(text: str, limit: int) -> None:
    out = truncate_utf8(text, limit)
    assert len(out.encode("utf-8")) <= max(limit, 0)


def test_runner_error_str_and_chain() -> None:
    cause = ConnectionRefusedError("nope")

    def start() -> None:
        try:
            raise cause
        except ConnectionRefusedError as exc:
            err = E.ServerlessConnectionError(message="refused", reason="connect")
            raise X.RunnerError(err) from exc

    with pytest.raises(X.RunnerError) as info:
        start()
    assert str(info.value) == "serverless_connection_error: connect: refused"
    assert info.value.__cause__ is cause
    assert info.value.code == "serverless_connection_error"


@pytest.mark.parametrize("facet", E.STORE_FACETS)
def test_durable_store_required_codes(facet: str) -> None:
    err = X.DurableStoreRequiredError(facet)
    assert err.code == f"durable_store_required:{facet}"
    assert str(err).startswith(f"durable_store_required:{facet}: ")


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (X.MissingExecutionIdError, "missing_execution_id"),
        (X.ExecutionBusyError, "execution_busy"),
        (X.ExecutionLeaseLostError, "execution_lease_lost"),
        (X.StoreCommitFailedError, "store_commit_failed"),
        (X.StoreReadFailedError, "store_read_failed"),
    ],
)
def test_kit_error_codes(cls: type[X.KitError], code: str) -> None:
    assert cls("x").code == code
    assert str(cls("x")) == f"{code}: x"


def test_unknown_facet_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown store facet"):
        X.DurableStoreRequiredError("nope")


def test_importing_core_loads_no_boto3_or_httpx() -> None:
    code = (
        "import sys, core.errors, core.events, core.models, core.truncate\n"
        "import pkgutil, importlib, core\n"
        "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('core.' + m.name)\n"
        "bad = [m for m in ('boto3', 'botocore', 'httpx', 'httpx_sse') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _documented() -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text("utf-8")


@pytest.mark.parametrize("code", [c for c in GOLDEN_CODES if ":" not in c])
def test_every_code_has_a_docs_entry(code: str) -> None:
    assert f"### `{code}`" in _documented()


@pytest.mark.parametrize("facet", E.STORE_FACETS)
def test_every_facet_is_documented(facet: str) -> None:
    assert "### `durable_store_required:<facet>`" in _documented()
    assert f"`{facet}`" in _documented()


@pytest.mark.parametrize("reason", E.CONNECTION_REASONS)
def test_every_connection_reason_is_documented(reason: str) -> None:
    assert f"| `{reason}` |" in _documented()
