"""Telemetry: ErrorEvent, the errors channel, and the capped extra.errors list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.errors import ServerlessHttpError
from core.events import ErrorEvent, ErrorsChannel, append_errors, read_errors

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _event(i: int) -> ErrorEvent:
    return ErrorEvent.of(
        ServerlessHttpError(status_code=500 + i, body=f"b{i}"),
        scope="pool",
        now=T0 + timedelta(seconds=i),
        tags={"pool": "ns/r"},
    )


def test_event_of_typed_error_keeps_fields() -> None:
    e = _event(3)
    assert e.code == "serverless_http_error"
    assert e.message == "endpoint answered HTTP 503: b3"
    assert e.context["error"] == {"code": "serverless_http_error", "status_code": 503, "body": "b3"}
    assert ErrorEvent.model_validate(e.to_json()) == e


def test_channel_summary_and_text() -> None:
    ch = ErrorsChannel()
    assert ch.summary() == {"errors": 0, "by_code": {}, "by_scope": {}}
    assert ch.render_text() == "no errors"
    ch.emit(_event(0))
    ch.emit(ErrorEvent(scope="actor", code="runner_no_response", message="silent", timestamp=T0))
    s = ch.summary()
    assert s["errors"] == 2
    assert s["by_code"] == {"runner_no_response": 1, "serverless_http_error": 1}
    assert s["by_scope"] == {"actor": 1, "pool": 1}
    assert s["last"]["code"] == "runner_no_response"  # type: ignore[index,call-overload]
    text = ch.render_text()
    assert "[pool] serverless_http_error" in text and "pool=ns/r" in text
    assert "total 2" in text
    ch.clear()
    assert len(ch) == 0


@pytest.mark.parametrize(
    ("existing", "new", "cap", "kept", "dropped"),
    [
        pytest.param(0, 3, 5, [0, 1, 2], 0, id="under_cap"),
        pytest.param(0, 7, 5, [2, 3, 4, 5, 6], 2, id="over_cap_keeps_newest"),
        pytest.param(4, 3, 5, [2, 3, 4, 5, 6], 2, id="existing_plus_new"),
        pytest.param(0, 2, 0, [], 2, id="zero_cap"),
    ],
)
def test_append_errors_caps(
    existing: int, new: int, cap: int, kept: list[int], dropped: int
) -> None:
    extra = append_errors({"other": 1}, [_event(i) for i in range(existing)], cap=cap)
    extra = append_errors(extra, [_event(i) for i in range(existing, existing + new)], cap=cap)
    assert extra["other"] == 1
    events, n = read_errors(extra)
    assert [e.context["error"]["status_code"] - 500 for e in events] == kept  # type: ignore[index,call-overload,operator]
    assert n == dropped == existing + new - len(kept)


def test_dropped_accumulates() -> None:
    extra = append_errors(None, [_event(i) for i in range(3)], cap=2)
    extra = append_errors(extra, [_event(i) for i in range(3, 6)], cap=2)
    assert extra["errors"]["dropped"] == 4
    assert len(extra["errors"]["events"]) == 2


def test_malformed_existing_value_is_replaced_not_raised() -> None:
    extra = append_errors({"errors": "garbage"}, [_event(0)])
    events, dropped = read_errors(extra)
    assert len(events) == 1 and dropped == 1
