"""Protocol v1 frames: bodies, strict base64, JSON, schema and version, all as typed errors."""

from __future__ import annotations

import base64
import json

import pytest

from core.errors import ServerlessInvalidBase64, ServerlessInvalidPayload
from core.exceptions import RunnerError
from core.protocol import (
    PROTOCOL_VERSION,
    DoneFrame,
    ErrorFrame,
    InitFrame,
    OutputFrame,
    decode_frame,
    decode_frames,
    encode_frame,
    probe_body,
    start_body,
)


def b64json(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def test_bodies() -> None:
    assert start_body("a1", "m1", {"count": 1}, [1, "x"]) == {
        "protocol_version": 1,
        "actor_id": "a1",
        "message_id": "m1",
        "state": {"count": 1},
        "input": [1, "x"],
    }
    assert probe_body() == {"protocol_version": PROTOCOL_VERSION, "probe": True}


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(
            {"v": 1, "type": "init", "runner_id": "r-1"}, InitFrame(runner_id="r-1"), id="init"
        ),
        pytest.param(
            {"v": 1, "type": "init", "runner_id": "r-1", "region": "eu"},
            InitFrame(runner_id="r-1"),
            id="init_extra_keys_ignored",
        ),
        pytest.param({"type": "output", "data": [1, {"a": None}]}, None, id="output"),
        pytest.param({"type": "done", "output": "x", "state": None}, None, id="done_null_state"),
        pytest.param(
            {"type": "error", "code": "boom", "message": "m", "retryable": True}, None, id="error"
        ),
        pytest.param(
            {"type": "error", "code": "boom"},
            ErrorFrame(code="boom", message="", retryable=False),
            id="error_defaults",
        ),
    ],
)
def test_decode_valid_frames(wire: dict[str, object], expected: object) -> None:
    frame = decode_frame(b64json(wire))
    if expected is not None:
        assert frame == expected
    assert frame.type == wire["type"]
    assert decode_frame(encode_frame(frame)) == frame


def test_decode_accepts_bytes_and_wrapped_base64() -> None:
    data = b64json({"type": "done", "output": {"big": "x" * 200}, "state": 1})
    wrapped = "\n".join(data[i : i + 76] for i in range(0, len(data), 76))
    assert isinstance(decode_frame(wrapped), DoneFrame)
    assert isinstance(decode_frame(wrapped.encode()), DoneFrame)


# Strings that are not standard, padded base64.
NOT_BASE64 = [
    pytest.param("not base64!!", id="punctuation"),
    pytest.param("abc", id="bad_padding"),
    pytest.param("eyJ0eXBlIjoiZG9uZSJ9 ", id="trailing_space"),
    pytest.param("ZG9uZQ==ZG9uZQ==", id="data_after_padding"),
    pytest.param("éé==", id="non_ascii"),
    pytest.param("-_-_", id="urlsafe_alphabet"),
]


@pytest.mark.parametrize("data", NOT_BASE64)
def test_invalid_base64(data: str) -> None:
    with pytest.raises(RunnerError) as info:
        decode_frame(data)
    assert isinstance(info.value.error, ServerlessInvalidBase64)
    assert info.value.__cause__ is not None


@pytest.mark.parametrize(
    ("payload", "message_part"),
    [
        pytest.param(b"hello, not JSON", "not UTF-8 JSON", id="not_json"),
        pytest.param(b"\xff\xfe{}", "not UTF-8 JSON", id="not_utf8"),
        pytest.param(b"", "not UTF-8 JSON", id="empty"),
        pytest.param(b"[1, 2]", "JSON object", id="array"),
        pytest.param(b'{"v": 1, "runner_id": "x"}', "no 'type'", id="no_type"),
        pytest.param(b'{"type": "bogus"}', "unknown frame type 'bogus'", id="unknown_type"),
        pytest.param(b'{"v": 1, "type": "init"}', "init.runner_id", id="init_no_runner_id"),
        pytest.param(b'{"v": 1, "type": "init", "runner_id": ""}', "init.runner_id", id="empty_id"),
        pytest.param(
            b'{"v": 2, "type": "init", "runner_id": "x"}',
            "unsupported protocol version 2",
            id="wrong_version",
        ),
        pytest.param(b'{"type": "init", "runner_id": "x", "v": "1"}', "version", id="v_string"),
        pytest.param(b'{"type": "done", "output": 1}', "done.state", id="done_without_state"),
        pytest.param(b'{"type": "output"}', "output.data", id="output_without_data"),
        pytest.param(b'{"type": "error", "retryable": "no"}', "error.", id="error_bad_fields"),
    ],
)
def test_invalid_payload(payload: bytes, message_part: str) -> None:
    with pytest.raises(RunnerError) as info:
        decode_frame(base64.b64encode(payload).decode())
    error = info.value.error
    assert isinstance(error, ServerlessInvalidPayload)
    assert message_part in error.message
    assert error.raw_payload == payload.decode("utf-8", "replace")[:512]


def test_raw_payload_is_cut_at_a_character_boundary() -> None:
    payload = json.dumps({"type": "nope", "pad": "a" * 490 + "€" * 20}).encode()
    with pytest.raises(RunnerError) as info:
        decode_frame(base64.b64encode(payload))
    raw = info.value.error.to_json()["raw_payload"]
    assert isinstance(raw, str)
    assert len(raw.encode()) <= 512
    assert payload.decode().startswith(raw)


def test_output_frame_keeps_json_values() -> None:
    frame = decode_frame(b64json({"type": "output", "data": {"n": 1.5, "l": [True, None]}}))
    assert frame == OutputFrame(data={"n": 1.5, "l": [True, None]})


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'{"type":"done","output":NaN,"state":1}', id="nan_output"),
        pytest.param(b'{"type":"done","output":1,"state":{"a":[Infinity]}}', id="inf_in_state"),
        pytest.param(b'{"type":"done","output":-Infinity,"state":1}', id="minus_infinity"),
        pytest.param(b'{"type":"output","data":1e400}', id="exponent_overflow"),
        pytest.param(b'{"type":"output","data":[1E400]}', id="upper_exponent_overflow"),
        pytest.param(b'{"type":"output","data":1' + b"0" * 400 + b".0}", id="mantissa_overflow"),
    ],
)
def test_non_finite_numbers_are_invalid_payload(payload: bytes) -> None:
    """RFC 8259 JSON has no NaN or Infinity; a frame with one can never reach state or result."""
    data = base64.b64encode(payload)
    for decode in (decode_frame, lambda d: decode_frames([d])[0]):
        with pytest.raises(RunnerError) as info:
            decode(data)
        assert isinstance(info.value.error, ServerlessInvalidPayload)
        assert "RFC 8259" in info.value.error.message


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b'{"type":"output","data":{"x":-1E999}}', id="exponent"),
        pytest.param(b'{"type":"output","data":' + b"9" * 320 + b".5}", id="long_mantissa"),
        pytest.param(b'{"type":"done","output":NaN,"state":1}', id="nan_in_done"),
    ],
)
def test_a_non_finite_frame_in_a_run_of_short_outputs_is_found(bad: bytes) -> None:
    """The batched decode scans a run at once (a long number only where a frame is long)."""
    short = base64.b64encode(b'{"type":"output","data":{"i":1}}')
    with pytest.raises(RunnerError) as info:
        decode_frames([short] * 5 + [base64.b64encode(bad)] + [short])
    assert isinstance(info.value.error, ServerlessInvalidPayload)
    assert "RFC 8259" in info.value.error.message


def test_a_run_of_outputs_then_done_decodes_in_order() -> None:
    outputs = [base64.b64encode(b'{"type":"output","data":%d}' % i) for i in range(3)]
    done = base64.b64encode(b'{"type":"done","output":"x","state":{"n":3}}')
    assert decode_frames([*outputs, done]) == [
        OutputFrame(data=0),
        OutputFrame(data=1),
        OutputFrame(data=2),
        DoneFrame(output="x", state={"n": 3}),
    ]


def test_finite_numbers_and_look_alike_strings_pass() -> None:
    frame = decode_frame(base64.b64encode(b'{"type":"output","data":[1e5,"NaN","Infinity",2E-3]}'))
    assert frame == OutputFrame(data=[100000.0, "NaN", "Infinity", 0.002])
