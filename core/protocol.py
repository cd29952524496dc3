"""Serverless endpoint protocol v1: request bodies and the frames a runner streams back.

Pure: stdlib + pydantic. The SSE adapter cuts the stream into events; this module turns one
``message`` event's data into a typed frame, or raises ``RunnerError`` with
``serverless_invalid_base64`` / ``serverless_invalid_payload``.

Wire (each ``message`` event's data is standard base64 of UTF-8 JSON)::

    {"v":1,"type":"init","runner_id":"..."}          first, and the only success for the tracker
    {"type":"output","data":...}                    zero or more
    {"type":"done","output":...,"state":...}        last, or
    {"type":"error","code":"...","message":"...","retryable":false}
    event: ping      (any data)                     keep-alive, at any time
    event: stopping  (any data)                     clean early end
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import ConfigDict, Field, JsonValue, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from core.errors import ServerlessInvalidBase64, ServerlessInvalidPayload
from core.exceptions import RunnerError

PROTOCOL_VERSION: Final = 1
"""The protocol version this kit speaks (``protocol_version`` in bodies, ``v`` in ``init``)."""

START_PATH: Final = "/start"


# Frames are slotted, frozen pydantic dataclasses rather than BaseModels: one object per frame
# instead of three (instance, __dict__, fields set), which halves the garbage-collector work of
# a busy stream (bench/sse_throughput.py). Unknown keys are ignored so a runner may add fields.
_FRAME_CONFIG: Final = ConfigDict(extra="ignore")


@dataclass(frozen=True, slots=True, kw_only=True, config=_FRAME_CONFIG)
class InitFrame:
    """The runner started; ``runner_id`` names it in later ``runner_no_response`` errors."""

    runner_id: Annotated[str, Field(min_length=1, max_length=1024)]
    v: Literal[1] = 1
    type: Literal["init"] = "init"


@dataclass(frozen=True, slots=True, kw_only=True, config=_FRAME_CONFIG)
class OutputFrame:
    """An intermediate output of the actor's code."""

    data: JsonValue
    type: Literal["output"] = "output"


@dataclass(frozen=True, slots=True, kw_only=True, config=_FRAME_CONFIG)
class DoneFrame:
    """The execution finished: its ``output`` and the actor's new ``state``."""

    output: JsonValue
    state: JsonValue
    type: Literal["done"] = "done"


@dataclass(frozen=True, slots=True, kw_only=True, config=_FRAME_CONFIG)
class ErrorFrame:
    """The actor's own code failed; ``retryable`` is the runner's hint to the error policy."""

    code: Annotated[str, Field(min_length=1, max_length=256)]
    message: str = ""
    retryable: bool = False
    type: Literal["error"] = "error"


@dataclass(frozen=True, slots=True, kw_only=True, config=_FRAME_CONFIG)
class StoppingFrame:
    """``event: stopping``: the runner is shutting down; a clean early end of the stream."""

    type: Literal["stopping"] = "stopping"


Frame: TypeAlias = InitFrame | OutputFrame | DoneFrame | ErrorFrame | StoppingFrame
TerminalFrame: TypeAlias = DoneFrame | ErrorFrame | StoppingFrame
"""A frame that ends an execution stream."""

_DATA_FRAME_ADAPTER: Final = TypeAdapter(
    Annotated[InitFrame | OutputFrame | DoneFrame | ErrorFrame, Field(discriminator="type")]
)
_VALIDATE_JSON: Final = _DATA_FRAME_ADAPTER.validator.validate_json  # skips a wrapper per frame
_VALIDATE_OUTPUT_JSON: Final = TypeAdapter(OutputFrame).validator.validate_json
_FRAME_ADAPTER: Final[TypeAdapter[Frame]] = TypeAdapter(Frame)


def start_body(
    actor_id: str, message_id: str, state: JsonValue, input: JsonValue
) -> dict[str, Any]:
    """The JSON body of ``POST {url}/start`` for one execution."""
    return {
        "protocol_version": PROTOCOL_VERSION,
        "actor_id": actor_id,
        "message_id": message_id,
        "state": state,
        "input": input,
    }


def probe_body() -> dict[str, Any]:
    """The JSON body of a health probe: the runner answers ``init`` and may end there."""
    return {"protocol_version": PROTOCOL_VERSION, "probe": True}


def frame_json(frame: Frame) -> bytes:
    """A frame's wire JSON (UTF-8)."""
    return _FRAME_ADAPTER.dump_json(frame)


def encode_frame(frame: InitFrame | OutputFrame | DoneFrame | ErrorFrame) -> str:
    """The ``data`` of a ``message`` event carrying ``frame`` (for runner authors and tests)."""
    return base64.b64encode(frame_json(frame)).decode("ascii")


# A frame whose JSON might hold NaN, +-Infinity (which the JSON parser accepts) or a number that
# overflows to infinity (an exponent, or a mantissa of 300+ digits): only those are walked for
# non-finite floats. The scan is a few C-level byte searches (a regex costs ~4x the whole frame
# decode); false positives only cost the walk.
_DIGITS_TO_ZERO: Final = bytes.maketrans(b"123456789E", b"000000000e")  # and one exponent case
_LONG_NUMBER: Final = b"0" * 300
NOT_FINITE_MESSAGE: Final = (
    "frame has NaN, Infinity or a number that overflows to infinity: not JSON (RFC 8259)"
)


def _maybe_not_finite(payload: bytes, *, longest: int | None = None) -> bool:
    """``longest``: the longest of the payloads joined in ``payload`` (a number of 300+ digits
    needs a payload that long; most are far shorter, and the search is the scan's dearest)."""
    if b"NaN" in payload or b"Infinity" in payload:
        return True
    digits = payload.translate(_DIGITS_TO_ZERO)
    if b"0e" in digits:
        return True
    return (len(payload) if longest is None else longest) >= 300 and _LONG_NUMBER in digits


def _finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is float:
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _check_finite(frame: Frame, payload: bytes) -> None:
    """Raise ``serverless_invalid_payload`` if an output/done frame carries a non-finite number."""
    if type(frame) is OutputFrame:
        values: list[Any] = [frame.data]
    elif type(frame) is DoneFrame:
        values = [frame.output, frame.state]
    else:
        return
    if _maybe_not_finite(payload) and not _finite(values):
        raise RunnerError(ServerlessInvalidPayload(message=NOT_FINITE_MESSAGE, raw_payload=payload))


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    kind = first["type"]
    loc = ".".join(str(part) for part in first["loc"])
    if kind == "json_invalid":
        return f"frame is not UTF-8 JSON: {first['msg']}"
    if kind == "literal_error" and loc.endswith(".v"):
        return (
            f"unsupported protocol version {first['input']!r} in init "
            f"(this kit speaks v{PROTOCOL_VERSION})"
        )
    if kind == "union_tag_invalid":
        return f"unknown frame type {first['ctx'].get('tag')!r}"
    if kind == "union_tag_not_found":
        return "frame has no 'type'"
    if kind == "model_attributes_type" or not first["loc"]:
        return f"frame must be a JSON object: {first['msg']}"
    return f"invalid frame: {loc}: {first['msg']}"


def decode_frame(data: str | bytes) -> InitFrame | OutputFrame | DoneFrame | ErrorFrame:
    """Decode one ``message`` event's data: base64 (strict), then JSON, then a v1 frame.

    Line breaks are dropped first: SSE joins multi-line ``data:`` with ``\\n``, and a runner
    may wrap long base64. Raises ``RunnerError`` (invalid base64 / invalid payload), nothing else.
    """
    try:  # the hot path: one call into C and one into Rust
        payload = binascii.a2b_base64(data, strict_mode=True)
        frame: InitFrame | OutputFrame | DoneFrame | ErrorFrame = _VALIDATE_JSON(payload)
    except ValueError:  # binascii.Error and ValidationError are ValueErrors
        return _decode_carefully(data)
    _check_finite(frame, payload)
    return frame


def decode_frames(datas: Sequence[bytes]) -> list[Frame]:
    """``decode_frame`` of each, in one tight loop; raises at the first bad one."""
    a2b = binascii.a2b_base64
    try:
        payloads = [a2b(data, strict_mode=True) for data in datas]
    except ValueError:
        return [decode_frame(data) for data in datas]
    decoded: list[Frame]
    try:  # a run is outputs but for its last frame or two: their own validator is quicker
        decoded = [_VALIDATE_OUTPUT_JSON(payload) for payload in payloads]
    except ValueError:
        try:
            decoded = [_VALIDATE_JSON(payload) for payload in payloads]
        except ValueError:
            return [decode_frame(data) for data in datas]
    longest = max(map(len, payloads), default=0)
    if _maybe_not_finite(b"\n".join(payloads), longest=longest):  # rare: then frame by frame
        for frame, payload in zip(decoded, payloads, strict=True):
            _check_finite(frame, payload)
    return decoded


def _decode_carefully(data: str | bytes) -> InitFrame | OutputFrame | DoneFrame | ErrorFrame:
    """``decode_frame`` off the hot path: tolerate wrapped lines, say exactly what is wrong."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    compact = raw.replace(b"\n", b"")
    try:
        # Strict: the lenient default silently drops non-alphabet bytes and "decodes" garbage.
        # strict_mode is base64.b64decode(validate=True) plus padding rules, and faster.
        payload = binascii.a2b_base64(compact, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise RunnerError(ServerlessInvalidBase64(raw_payload=raw)) from exc
    try:
        frame: InitFrame | OutputFrame | DoneFrame | ErrorFrame = _VALIDATE_JSON(payload)
    except ValidationError as exc:
        raise RunnerError(
            ServerlessInvalidPayload(message=_describe(exc), raw_payload=payload)
        ) from exc
    _check_finite(frame, payload)
    return frame
