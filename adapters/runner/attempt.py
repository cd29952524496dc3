"""One start attempt as a state machine: its phase, its deadlines, and the frame rules.

Time is bounded by deadlines on the injected ``Clock``, not per-read timeouts: connect, time to
``init`` (pings do not count), idle with no event (pings and comments count), and the caller's
absolute ``deadline``. Before ``init`` a failure is the endpoint's (``RunnerError``); after it,
silence, the deadline or a broken stream is ``RunnerNoResponseError``, while a frame that does
not decode is still a ``RunnerError``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, Literal, NoReturn, TypeAlias, cast

import httpx

from adapters.runner.classify import classify_exception, connection_error, describe
from adapters.runner.sse import Event, EventReader, EventTooLarge
from core.errors import ServerlessInvalidPayload, ServerlessStreamEndedEarly
from core.exceptions import RunnerError, RunnerNoResponseError
from core.ports import Clock
from core.protocol import (
    ErrorFrame,
    Frame,
    InitFrame,
    OutputFrame,
    StoppingFrame,
    TerminalFrame,
    decode_frame,
    decode_frames,
    frame_json,
)
from core.redaction import contains_secret, redact_text

if TYPE_CHECKING:
    from adapters.settings import Settings

logger = logging.getLogger("runner_kit.sse")

DeadlineKind: TypeAlias = Literal["init", "idle", "deadline"]

SLICE: Final = 200
"""Events decoded at a time. A read of 64 KiB holds ~1,000 small events; handing their frames
out 200 at a time lets the caller drop each slice before the next is made, so a slice of small
frames (a frame and its dict each) stays under the garbage collector's first threshold (700)
and few collections run (bench/sse_throughput.py: 320 and 256 measured a little slower)."""


@dataclass(frozen=True)
class StartLimits:
    """Timeouts and size caps of one start; small values for tests, settings in Lambda."""

    connect_timeout_s: float = 5.0
    init_timeout_s: float = 30.0
    idle_timeout_s: float = 60.0
    max_event_bytes: int = 1024 * 1024
    max_error_body_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "init_timeout_s", "idle_timeout_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.max_event_bytes <= 0 or self.max_error_body_bytes <= 0:
            raise ValueError("size caps must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> StartLimits:
        """The limits configured for the functions (``adapters.settings``)."""
        names = ("connect_timeout_s", "init_timeout_s", "idle_timeout_s", "max_event_bytes")
        return cls(**{name: getattr(settings, name) for name in names})  # the same names


class Attempt:
    """The state of one start attempt: phase, timers, and how each failure is classified."""

    __slots__ = (
        "clock",
        "comments_seen",
        "finished",
        "idle_deadline",
        "init_deadline",
        "limits",
        "pending",
        "reader",
        "runner_id",
        "secrets",
        "started",
        "total_deadline",
    )

    def __init__(
        self,
        limits: StartLimits,
        deadline: float | None,
        clock: Clock,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.secrets = secrets
        self.started = clock.monotonic()
        self.init_deadline = self.started + limits.init_timeout_s
        self.idle_deadline = self.started + limits.idle_timeout_s
        self.total_deadline = math.inf if deadline is None else deadline
        self.runner_id: str | None = None
        self.finished = False
        self.reader = EventReader(limits.max_event_bytes)
        self.comments_seen = 0
        self.pending: list[Event] = []
        """Events of the last read not decoded yet (``drain``)."""

    # Deadlines.

    def next_deadline(self) -> tuple[float, DeadlineKind]:
        """The earliest deadline that applies now, and which one it is."""
        best: tuple[float, DeadlineKind] = (self.idle_deadline, "idle")
        if self.runner_id is None and self.init_deadline <= best[0]:
            best = (self.init_deadline, "init")
        if self.total_deadline <= best[0]:
            best = (self.total_deadline, "deadline")
        return best

    def pre_body_deadline(self) -> tuple[float, DeadlineKind]:
        """Until the response starts, only time to init and the caller's deadline apply."""
        if self.total_deadline < self.init_deadline:
            return self.total_deadline, "deadline"
        return self.init_deadline, "init"

    def connect_timeout(self) -> float:
        """Seconds the connection may take; raises if the time to init already ran out."""
        when, kind = self.pre_body_deadline()
        remaining = when - self.clock.monotonic()
        if remaining <= 0:
            self.timed_out(kind)
        return min(self.limits.connect_timeout_s, remaining)

    def request_timeout(self) -> httpx.Timeout:
        """httpx's timeouts of the request, until its answer starts."""
        budget = max(self.pre_body_deadline()[0] - self.clock.monotonic(), 0.001)
        return httpx.Timeout(
            connect=self.connect_timeout(),
            read=None if math.isinf(budget) else budget,
            write=min(budget, self.limits.connect_timeout_s),
            pool=min(budget, self.limits.connect_timeout_s),
        )

    def timed_out(self, kind: DeadlineKind, cause: BaseException | None = None) -> NoReturn:
        """Raise the error of a deadline that passed."""
        self.finished = True
        limits = self.limits
        if self.runner_id is None:
            message = {
                "init": f"no init frame within {limits.init_timeout_s:g} s",
                "idle": f"no event for {limits.idle_timeout_s:g} s before init",
                "deadline": "the caller's deadline passed before init",
            }[kind]
            raise connection_error(message, "timeout") from cause
        detail = {
            "init": "timed out",  # not reachable after init; kept total for safety
            "idle": f"no event for {limits.idle_timeout_s:g} s",
            "deadline": "the caller's deadline passed before done",
        }[kind]
        raise RunnerNoResponseError(self.runner_id, detail) from cause

    def check_clock(self) -> None:
        """Raise if the earliest deadline has passed."""
        when, kind = self.next_deadline()
        if self.clock.monotonic() >= when:
            self.timed_out(kind)

    def broken(self, exc: BaseException, kind: DeadlineKind) -> NoReturn:
        """Raise the error of a transport failure while reading the body."""
        self.finished = True
        if isinstance(exc, httpx.ReadTimeout | TimeoutError):
            self.timed_out(kind, exc)
        if self.runner_id is not None:
            raise RunnerNoResponseError(self.runner_id, describe(exc)) from exc
        if isinstance(exc, httpx.RemoteProtocolError):
            # The headers were fine, so the body was cut (e.g. mid-chunk): a broken read.
            raise connection_error(describe(exc), "read") from exc
        raise RunnerError(classify_exception(exc)) from exc

    # Events to frames.

    def feed(self, chunk: bytes) -> list[Frame]:
        """The frames one read of the body completes."""
        try:
            events = self.reader.feed(chunk)
        except EventTooLarge:
            self._too_large()
        return self._frames(events)

    def end_of_stream(self) -> list[Frame]:
        """The last frames of a body that ended; raises unless a final frame came."""
        try:
            frames = self._frames(self.reader.finish())
        except EventTooLarge:
            self._too_large()
        if self.finished:
            return frames
        self.finished = True
        if self.runner_id is None:
            raise RunnerError(ServerlessStreamEndedEarly())
        raise RunnerNoResponseError(self.runner_id, "stream ended without done")

    def elapsed(self) -> float:
        """Seconds since the attempt began."""
        return self.clock.monotonic() - self.started

    def _too_large(self) -> NoReturn:
        self.finished = True
        raise connection_error(
            f"an event exceeded {self.limits.max_event_bytes} bytes", "too_large"
        )

    def drain(self) -> list[Frame]:
        """The frames of the next ``SLICE`` events a read left pending."""
        events = self.pending[:SLICE]
        del self.pending[:SLICE]
        return self._decode(events)

    def _frames(self, events: list[Event]) -> list[Frame]:
        active = bool(events) or self.reader.comments != self.comments_seen
        self.comments_seen = self.reader.comments
        if len(events) > SLICE:
            self.pending = events[SLICE:]
            del events[SLICE:]
        frames = self._decode(events)
        if active:
            self.idle_deadline = self.clock.monotonic() + self.limits.idle_timeout_s
        if not self.finished:
            self.check_clock()
        return frames

    def _decode(self, events: list[Event]) -> list[Frame]:
        try:
            frames = self._decode_all(events)
        except RunnerError:
            self.finished = True
            raise
        if self.finished:
            self.pending = []  # what follows the final frame is ignored
        return frames

    def _decode_all(self, events: list[Event]) -> list[Frame]:
        if self.runner_id is not None and (self.reader.plain or set(map(type, events)) <= {str}):
            # The hot path: a started runner and a read of message events only.
            return self._decode_run(cast(list[str], events))
        # A read with other events (pings, an init, ...): message events after init still
        # decode in runs, in order, so one ping per read does not send the whole read down
        # the one-by-one path.
        out: list[Frame] = []
        run: list[str] = []
        for event in events:
            if not isinstance(event, str):
                if run:
                    out.extend(self._decode_run(run))
                    run = []
                    if self.finished:
                        break
                if event.event == "stopping":
                    if self.runner_id is None:
                        raise RunnerError(ServerlessStreamEndedEarly())
                    out.append(self._accept(StoppingFrame()))
                    break
                continue  # ping and unknown event types: activity only
            if self.runner_id is None:
                if event:  # an empty data buffer is not dispatched (WHATWG)
                    out.append(self._accept(decode_frame(event)))  # init first, on its own
                    if self.finished:
                        break
            else:
                run.append(event)
        if run and not self.finished:
            out.extend(self._decode_run(run))
        return out

    def _decode_run(self, datas: list[str]) -> list[Frame]:
        """Frames of consecutive message events after init: one batched decode, then the
        protocol checks on the frames that are not outputs; stops at the final frame."""
        try:
            # Base64 text goes to binascii as str as well as bytes: no copy to encode it.
            frames = decode_frames(cast(list[bytes], datas))
        except RunnerError:  # one by one, to raise at the bad frame, not before
            out: list[Frame] = []
            for data in datas:
                if data:  # an empty data buffer is not dispatched (WHATWG)
                    out.append(self._accept(decode_frame(data)))
                    if self.finished:
                        break
            return out
        if list(map(type, frames)).count(OutputFrame) == len(frames):
            return frames  # outputs only: no protocol rule to check (one pass in C)
        for index, frame in enumerate(frames):
            if type(frame) is not OutputFrame:
                frames[index] = self._accept(frame)
                if self.finished:
                    del frames[index + 1 :]
                    break
        return frames

    def _accept(self, frame: Frame) -> Frame:
        if self.runner_id is None:
            if not isinstance(frame, InitFrame):
                self._out_of_order(frame, f"expected an init frame first, got {frame.type!r}")
            if self.secrets and contains_secret(frame.runner_id, self.secrets):
                frame = replace(frame, runner_id=redact_text(frame.runner_id, self.secrets))
            self.runner_id = frame.runner_id
            logger.debug("runner %s started after %.3f s", frame.runner_id, self.elapsed())
        elif isinstance(frame, InitFrame):
            self._out_of_order(frame, "a second init frame")
        elif isinstance(frame, TerminalFrame):
            self.finished = True
            if isinstance(frame, ErrorFrame) and self.secrets:
                # The actor's own error message is shown and stored: no echoed secret in it.
                frame = replace(
                    frame,
                    code=redact_text(frame.code, self.secrets),
                    message=redact_text(frame.message, self.secrets),
                )
        return frame

    def _out_of_order(self, frame: Frame, message: str) -> NoReturn:
        self.finished = True
        raise RunnerError(ServerlessInvalidPayload(message=message, raw_payload=frame_json(frame)))
