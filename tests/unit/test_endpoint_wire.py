"""The endpoint SDK's pure parts: request parsing, events the kit decodes, calling a function."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from core.protocol import DoneFrame, ErrorFrame, InitFrame, OutputFrame, decode_frame
from runner_kit_endpoint import ActorError, Context, Result, actor, wire


def data(event: bytes) -> bytes:
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    return event[6:-2]


def test_events_decode_with_the_kit() -> None:
    assert decode_frame(data(wire.init_event("r-1"))) == InitFrame(runner_id="r-1")
    assert decode_frame(data(wire.output_event({"ü": [1, None]}))) == OutputFrame(
        data={"ü": [1, None]}
    )
    assert decode_frame(data(wire.done_event("o", {"s": "line\nbreak"}))) == DoneFrame(
        output="o", state={"s": "line\nbreak"}
    )
    assert decode_frame(data(wire.error_event("c", "m", True))) == ErrorFrame(
        code="c", message="m", retryable=True
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}, object()])
def test_outputs_must_be_strict_json(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        wire.output_event(value)


@pytest.mark.parametrize(
    ("header", "lifespan"),
    [
        pytest.param("300", 300.0, id="seconds"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param("0", None, id="zero"),
        pytest.param("-3", None, id="negative"),
        pytest.param("inf", None, id="inf"),
        pytest.param("soon", None, id="not_a_number"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_the_lifespan_header(header: str | None, lifespan: float | None) -> None:
    headers = {"x-runner-pool": "ns/r", "x-runner-total-slots": "6"}
    if header is not None:
        headers["x-runner-request-lifespan"] = header
    body = json.dumps({"protocol_version": 1, "actor_id": "a", "message_id": "m", "input": 1})
    request = wire.parse_start(body.encode(), headers)
    assert request.lifespan_s == lifespan
    assert (request.pool, request.total_slots, request.state, request.input) == ("ns/r", 6, None, 1)
    assert request.probe is False


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b"", "invalid_body", id="empty"),
        pytest.param(
            b'{"protocol_version": true, "probe": true}', "unsupported_protocol_version", id="bool"
        ),
        pytest.param(b'{"probe": true}', "unsupported_protocol_version", id="no_version"),
        pytest.param(b'{"protocol_version": 1, "x": Infinity}', "invalid_body", id="infinity"),
        pytest.param(b"\xff", "invalid_body", id="not_utf8"),
    ],
)
def test_bad_bodies(body: bytes, code: str) -> None:
    with pytest.raises(wire.BadRequest) as refused:
        wire.parse_start(body, {})
    assert refused.value.code == code
    assert refused.value.status == 400


def test_a_probe() -> None:
    assert wire.parse_start(b'{"protocol_version": 1, "probe": true}', {}).probe is True


class _Callable:
    def __call__(self, state: Any, input: Any, ctx: Context) -> Any:
        return ctx.runner_id, None


@pytest.mark.parametrize(
    ("fn", "wants"),
    [
        pytest.param(lambda state, input: None, False, id="two"),
        pytest.param(lambda state, input, ctx: None, True, id="three"),
        pytest.param(lambda *args: None, True, id="varargs"),
        pytest.param(_Callable(), True, id="callable_object"),
    ],
)
def test_the_context_is_passed_when_asked_for(fn: Any, wants: bool) -> None:
    assert actor.wants_context(fn) is wants


def _ctx() -> Context:
    return Context(
        runner_id="r",
        actor_id="a",
        message_id="m",
        pool=None,
        total_slots=None,
        deadline=None,
        _sink=lambda event: None,
        _cancelled=threading.Event(),
    )


@pytest.mark.parametrize(
    ("fn", "frame"),
    [
        pytest.param(lambda s, i: Result(i, s), DoneFrame(output=2, state=1), id="result"),
        pytest.param(lambda s, i: (i, s), DoneFrame(output=2, state=1), id="tuple"),
        pytest.param(_Callable(), DoneFrame(output="r", state=None), id="callable_object"),
        pytest.param(
            lambda s, i: (_ for _ in ()).throw(ActorError("e", "m", retryable=True)),
            ErrorFrame(code="e", message="m", retryable=True),
            id="actor_error",
        ),
        pytest.param(
            lambda s, i: [1, 2, 3],
            ErrorFrame(
                code="invalid_result",
                message="an actor function returns Result(output, state) or a tuple "
                "(output, state), not list",
            ),
            id="list",
        ),
    ],
)
def test_call_sync(fn: Any, frame: Any) -> None:
    assert decode_frame(data(actor.call_sync(fn, 1, 2, _ctx()))) == frame
