"""``core.redaction``: every form a secret travels in becomes ``***``; nothing else changes."""

from __future__ import annotations

import json

import pytest

from core.errors import (
    ServerlessConnectionError,
    ServerlessHttpError,
    ServerlessInvalidPayload,
    decode_pool_error,
)
from core.redaction import redact_error, redact_text, secret_forms, url_secrets

SECRET = "Bearer sk-live-0123456789"
FORMS = secret_forms([SECRET, "TOPSECRET-123 ", "line\r\nbreak\x00", "ab"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"401 rejected {SECRET}", "401 rejected ***", id="as_is"),
        pytest.param("token sk-live-0123456789 bad", "token *** bad", id="credential_word"),
        pytest.param(
            "Illegal header value b'TOPSECRET-123 '", "Illegal header value b'***'", id="bytes"
        ),
        pytest.param("got 'line\\r\\nbreak\\x00'", "got '***'", id="repr_escapes"),
        pytest.param(json.dumps({"h": "line\r\nbreak\x00"}), '{"h": "***"}', id="json_escapes"),
        pytest.param("Bearer%20sk-live-0123456789", "***", id="percent_encoded"),
        pytest.param("cut here: Bearer sk-li", "cut here: ***", id="cut_at_the_end"),
        pytest.param("ab ab cab", "ab ab cab", id="short_values_left_alone"),
        pytest.param("nothing to see", "nothing to see", id="untouched"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text, FORMS) == expected


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("https://u:pw@h.io/x?y=1", "https://***@h.io/x?y=1", id="userinfo"),
        pytest.param("https://h.io/a@b", "https://h.io/a@b", id="at_in_path"),
        pytest.param("https://u@h.io?x=@", "https://***@h.io?x=@", id="query"),
        pytest.param("not a url", "not a url", id="not_url"),
        pytest.param("http:/u:pw@h/x", "***@h/x", id="one_slash_userinfo"),
        pytest.param("u:pw@host", "***@host", id="no_scheme_userinfo"),
    ],
)
def test_without_userinfo(url: str, shown: str) -> None:
    from core.redaction import without_userinfo

    assert without_userinfo(url) == shown


def test_url_userinfo_is_a_secret() -> None:
    assert set(url_secrets("https://user:p%40ss@host/x")) >= {"user:p%40ss", "p%40ss", "p@ss"}
    assert url_secrets("https://host/x") == []


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ServerlessHttpError(status_code=401, body=f"no {SECRET}"), id="http"),
        pytest.param(
            ServerlessConnectionError(message=f"Illegal {SECRET!r}", reason="protocol"), id="conn"
        ),
        pytest.param(
            ServerlessInvalidPayload(message="bad", raw_payload=f'{{"x":"{SECRET}"'), id="payload"
        ),
        pytest.param(
            decode_pool_error({"code": "future_error", "detail": SECRET}), id="unknown_code"
        ),
    ],
)
def test_redact_error_keeps_the_type_and_drops_the_secret(error: object) -> None:
    redacted = redact_error(error, FORMS)  # type: ignore[arg-type]
    assert type(redacted) is type(error)
    assert "sk-live" not in json.dumps(redacted.to_json())
    assert "***" in json.dumps(redacted.to_json())
