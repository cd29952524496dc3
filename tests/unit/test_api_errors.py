"""API error codes are wire format: pinned, snake_case, documented, each with a fitting status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.api_errors import API_ERROR_CODES, API_ERRORS, ApiError
from core.errors import GATEWAY_CODES

GOLDEN_API_CODES = [
    "invalid_request",
    "malformed_body",
    "unsupported_media_type",
    "route_not_found",
    "json_too_deep",
    "non_finite_number",
    "item_too_large",
    "runner_config_not_found",
    "runner_config_invalid",
    "runner_config_url_blocked",
    "runner_config_header_invalid",
    "runner_config_conflict",
    "actor_not_found",
    "actor_exists",
    "actor_stopped",
    "actor_not_stopped",
    "actor_record_undecodable",
    "pool_not_configured",
    "message_not_found",
    "idempotency_key_reused",
    "message_not_retryable",
    "actor_runner_failed",
    "actor_ready_timeout",
    "server_error",
]

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text("utf-8")


def test_api_codes_are_pinned() -> None:
    assert list(API_ERROR_CODES) == GOLDEN_API_CODES


@pytest.mark.parametrize("code", GOLDEN_API_CODES)
def test_api_code_is_snake_case_and_documented(code: str) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", code)
    section = DOCS.split("## API errors", 1)[1].split("\n## ", 1)[0]
    assert f"| `{code}` | {API_ERRORS[code].status} | {API_ERRORS[code].group} |" in section


def test_gateway_codes_are_guard_503() -> None:
    for code in GATEWAY_CODES:
        assert API_ERRORS[code].group == "guard"
        assert API_ERRORS[code].status == 503


def test_only_server_error_is_a_500_and_input_errors_are_4xx() -> None:
    for spec in API_ERRORS.values():
        if spec.group in {"request", "runner_config", "actor", "message"}:
            assert 400 <= spec.status < 500, spec
    assert [s.code for s in API_ERRORS.values() if s.status >= 500 and s.group != "guard"] == [
        "server_error"
    ]


def test_api_error_carries_body_and_headers() -> None:
    err = ApiError("actor_not_found", "no actor x", metadata={"actor_id": "x"}, headers={"A": "b"})
    assert err.status == 404
    assert err.body.model_dump() == {
        "group": "actor",
        "code": "actor_not_found",
        "message": "no actor x",
        "metadata": {"actor_id": "x"},
    }
    assert err.headers == {"A": "b"}
    with pytest.raises(KeyError):
        ApiError("not_a_code", "x")
