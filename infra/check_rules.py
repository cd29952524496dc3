"""The rules of ``runner-kit check`` (``infra/check.py``), pure: recorded events in, verdicts out.

Each rule is ``pass``, ``fail`` (with a hint) or ``skip`` (an earlier failure hides it); a
``warn`` never fails the check. Rules: ``probe``, ``status``, ``content_type``, ``init_first``,
``init_in_time``, ``frames_decode``, ``final_frame``, ``nothing_after_final``, ``stream_ends``.
Warning: ``buffered`` (the whole answer arrived at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from infra import probe as probe_cmd

if TYPE_CHECKING:
    from collections.abc import Callable

    from adapters.runner.sse import Event
    from core.errors import RunnerPoolError
    from core.ports import ProbeResult
    from core.protocol import Frame

RULES: Final = (
    "probe",
    "status",
    "content_type",
    "init_first",
    "init_in_time",
    "frames_decode",
    "final_frame",
    "nothing_after_final",
    "stream_ends",
)
"""Every rule, in the order it is reported (a stable part of the ``--json`` answer)."""

LINGER_S: Final = 2.0
"""How long the stream may stay open after its final frame before ``stream_ends`` fails."""
BUFFERED_AFTER_S: Final = 1.0
"""Everything in one burst this long after the request: the answer was buffered."""

Status = Literal["pass", "fail", "skip", "warn"]


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict; ``hint`` says what to change when it failed."""

    id: str
    status: Status
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        """The rule as the ``--json`` answer shows it."""
        return {"id": self.id, "status": self.status, "detail": self.detail, "hint": self.hint}


@dataclass(frozen=True)
class Seen:
    """One event of the execution stream: when (s after the request), in which read, what."""

    at: float
    read: int
    kind: Literal["frame", "bad", "ping", "stopping", "other"]
    frame: Frame | None = None
    error: RunnerPoolError | None = None


@dataclass
class Observation:
    """What the execution request got back: the response, its events, and how it ended."""

    status: int | None = None
    content_type: str | None = None
    content_length: str | None = None
    body: str = ""
    events: list[Seen] = field(default_factory=list)
    reads: int = 0
    ended_at: float | None = None
    """When the stream ended cleanly (EOF)."""
    broken_at: float | None = None
    error: RunnerPoolError | None = None
    """A transport failure (before the answer, or while reading it)."""
    timed_out: Literal["init", "total", "linger"] | None = None

    def message_events(self) -> list[Seen]:
        """The events that carry protocol meaning (frames, bad frames, ``stopping``)."""
        return [seen for seen in self.events if seen.kind in ("frame", "bad", "stopping")]

    def final_index(self) -> int | None:
        """Index in ``message_events`` of the final frame after a valid ``init``, if any."""
        from core.protocol import DoneFrame, ErrorFrame, InitFrame

        started = False
        for index, seen in enumerate(self.message_events()):
            if seen.kind == "bad":
                return None  # the kit stops at a frame that does not decode
            if not started:
                if not isinstance(seen.frame, InitFrame):
                    return None
                started = True
            elif seen.kind == "stopping" or isinstance(seen.frame, DoneFrame | ErrorFrame):
                return index
            elif isinstance(seen.frame, InitFrame):
                return None  # a second init
        return None


class Observer:
    """Turns the bytes of a stream into ``Seen`` events (pure: time is passed in)."""

    def __init__(self, max_event_bytes: int = 1024 * 1024) -> None:
        from adapters.runner.sse import EventReader

        self.max_event_bytes = max_event_bytes
        self.reader = EventReader(max_event_bytes)
        self.obs = Observation()

    def feed(self, at: float, chunk: bytes) -> None:
        """One read of the body."""
        self.obs.reads += 1
        self._read(at, lambda: self.reader.feed(chunk))

    def end(self, at: float) -> None:
        """The body ended (EOF)."""
        self._read(at, self.reader.finish)
        self.obs.ended_at = at

    def _read(self, at: float, events: Callable[[], list[Event]]) -> None:
        from adapters.runner.sse import EventTooLarge
        from core.errors import ServerlessConnectionError

        try:
            self._events(at, events())
        except EventTooLarge:
            self.obs.error = ServerlessConnectionError(
                message=f"an event exceeded {self.max_event_bytes} bytes", reason="too_large"
            )

    def _events(self, at: float, events: list[Event]) -> None:
        from core.exceptions import RunnerError
        from core.protocol import StoppingFrame, decode_frame

        read = self.obs.reads
        for event in events:
            if isinstance(event, str):
                if not event:
                    continue  # an empty data buffer is not dispatched (WHATWG)
                try:
                    seen = Seen(at, read, "frame", frame=decode_frame(event))
                except RunnerError as exc:
                    seen = Seen(at, read, "bad", error=exc.error)
            elif event.event == "ping":
                seen = Seen(at, read, "ping")
            elif event.event == "stopping":
                seen = Seen(at, read, "stopping", frame=StoppingFrame())
            else:
                seen = Seen(at, read, "other")
            self.obs.events.append(seen)

    @property
    def has_init(self) -> bool:
        """The first frame arrived and is an ``init``."""
        from core.protocol import InitFrame

        events = self.obs.message_events()
        return bool(events) and isinstance(events[0].frame, InitFrame)

    @property
    def final_at(self) -> float | None:
        """When the final frame arrived (None: not yet, or never after this)."""
        index = self.obs.final_index()
        return None if index is None else self.obs.message_events()[index].at

    @property
    def hopeless(self) -> bool:
        """No final frame can count any more: the kit would have stopped reading here."""
        from core.protocol import InitFrame

        if self.obs.error is not None:
            return True  # an event over the size cap
        if self.obs.final_index() is not None:
            return False  # read on: what follows the final frame is a rule of its own
        events = self.obs.message_events()
        if not events:
            return False
        if not self.has_init:
            return True
        return any(seen.kind == "bad" or isinstance(seen.frame, InitFrame) for seen in events[1:])


# --- Evaluation: pure --------------------------------------------------------------------------


def _secs(value: float) -> str:
    return f"{value:.3f} s"


def evaluate(
    probe: ProbeResult, obs: Observation, *, init_timeout_s: float, linger_s: float = LINGER_S
) -> tuple[list[RuleResult], list[RuleResult]]:
    """The rules and the warnings of one check."""
    rules = [_probe_rule(probe), *_execution_rules(obs, init_timeout_s, linger_s)]
    return rules, _warnings(obs)


def _probe_rule(result: ProbeResult) -> RuleResult:
    if result.ok:
        took = result.time_to_init_s or 0.0
        return RuleResult("probe", "pass", f"init after {_secs(took)} (runner {result.runner_id})")
    assert result.error is not None
    return RuleResult(
        "probe",
        "fail",
        f"{result.error.code}: {result.error.summary}",
        probe_cmd.hint(result.error),
    )


def _skip_rest(rules: list[RuleResult], why: str) -> list[RuleResult]:
    done = {rule.id for rule in rules}
    return rules + [RuleResult(rule, "skip", why) for rule in RULES[1:] if rule not in done]


def _execution_rules(obs: Observation, init_timeout_s: float, linger_s: float) -> list[RuleResult]:
    from adapters.runner.classify import media_type
    from core.errors import ServerlessConnectionError, ServerlessHttpError
    from core.protocol import DoneFrame, ErrorFrame, InitFrame

    rules: list[RuleResult] = []
    if obs.status is None:
        if obs.timed_out is not None:
            error: RunnerPoolError = ServerlessConnectionError(
                message=f"no answer within {init_timeout_s:g} s", reason="timeout"
            )
        else:
            assert obs.error is not None
            error = obs.error
        rules.append(
            RuleResult("status", "fail", f"{error.code}: {error.summary}", probe_cmd.hint(error))
        )
        return _skip_rest(rules, "no answer")
    if obs.status != 200:
        http_error = ServerlessHttpError(status_code=obs.status, body=obs.body)
        hint = probe_cmd.hint(http_error)
        if 300 <= obs.status < 400:
            hint = probe_cmd.hint(ServerlessConnectionError(message="", reason="redirect"))
        detail = f"HTTP {obs.status}" + (f": {obs.body[:200]}" if obs.body else "")
        rules.append(RuleResult("status", "fail", detail, hint))
        return _skip_rest(rules, "not a 200 answer")
    rules.append(RuleResult("status", "pass", "HTTP 200"))
    if media_type(obs.content_type) != "text/event-stream":
        hint = probe_cmd.hint(ServerlessConnectionError(message="", reason="content_type"))
        rules.append(
            RuleResult("content_type", "fail", f"content-type {obs.content_type or '(none)'}", hint)
        )
        return _skip_rest(rules, "not an event stream")
    rules.append(RuleResult("content_type", "pass", "text/event-stream"))

    events = obs.message_events()
    first = events[0] if events else None
    init_hint = 'send {"v":1,"type":"init","runner_id":...} first, at once, before any slow work'
    if first is not None and first.kind == "frame" and isinstance(first.frame, InitFrame):
        rules.append(RuleResult("init_first", "pass", f"runner {first.frame.runner_id}"))
        if first.at <= init_timeout_s:
            rules.append(RuleResult("init_in_time", "pass", f"after {_secs(first.at)}"))
        else:
            late = f"after {_secs(first.at)}, over {init_timeout_s:g} s"
            rules.append(RuleResult("init_in_time", "fail", late, init_hint))
    else:
        if first is not None and first.kind == "bad":
            assert first.error is not None
            detail = f"{first.error.code}: {first.error.summary}"
            hint = probe_cmd.hint(first.error)
        elif first is not None:
            kind = (
                "event: stopping"
                if first.kind == "stopping"
                else repr(first.frame and first.frame.type)
            )
            detail, hint = f"the first frame was {kind}", init_hint
        elif obs.timed_out is not None:
            detail, hint = f"no init within {init_timeout_s:g} s", init_hint
        elif obs.error is not None:
            detail, hint = f"{obs.error.code}: {obs.error.summary}", probe_cmd.hint(obs.error)
        else:
            detail = "the stream ended before init (serverless_stream_ended_early)"
            hint = init_hint
        rules.append(RuleResult("init_first", "fail", detail, hint))
        timely = obs.timed_out == "init"
        rules.append(
            RuleResult("init_in_time", "fail", detail, init_hint)
            if timely
            else RuleResult("init_in_time", "skip", "no init")
        )

    rules.append(_decode_rule(events))
    final = obs.final_index()
    if final is None:
        rules.append(_no_final_rule(obs, events, init_timeout_s))
        return _skip_rest(rules, "no final frame")
    last = events[final]
    if isinstance(last.frame, DoneFrame):
        rules.append(RuleResult("final_frame", "pass", "done with output and state"))
    elif isinstance(last.frame, ErrorFrame):
        detail = (
            f"error frame {last.frame.code!r} (retryable {str(last.frame.retryable).lower()}): "
            "conformant; the actor's own code failed on the test input"
        )
        rules.append(RuleResult("final_frame", "pass", detail))
    else:
        rules.append(
            RuleResult(
                "final_frame",
                "fail",
                "event: stopping: the endpoint shut down during the run",
                "stopping is for instance shutdowns; run the check again once it is up",
            )
        )
        return _skip_rest(rules, "stopped")
    after = [seen for seen in obs.events[obs.events.index(last) + 1 :] if seen.kind != "ping"]
    if after:
        rules.append(
            RuleResult(
                "nothing_after_final",
                "fail",
                f"{len(after)} event(s) after the final frame (the kit ignores them)",
                "end the response right after done or error",
            )
        )
    else:
        rules.append(RuleResult("nothing_after_final", "pass", "nothing after the final frame"))
    if obs.ended_at is not None or obs.broken_at is not None:
        end = obs.ended_at if obs.ended_at is not None else obs.broken_at
        assert end is not None
        rules.append(
            RuleResult(
                "stream_ends",
                "pass",
                f"closed {_secs(max(0.0, end - last.at))} after the final frame",
            )
        )
    else:
        rules.append(
            RuleResult(
                "stream_ends",
                "fail",
                f"still open {linger_s:g} s after the final frame",
                "close the response after the final frame (chunked: send the last chunk)",
            )
        )
    return rules


def _decode_rule(events: list[Seen]) -> RuleResult:
    from core.protocol import InitFrame

    if not events:
        return RuleResult("frames_decode", "skip", "no frames")
    for index, seen in enumerate(events):
        if seen.kind == "bad":
            assert seen.error is not None
            return RuleResult(
                "frames_decode",
                "fail",
                f"frame {index + 1}: {seen.error.code}: {seen.error.summary}",
                probe_cmd.hint(seen.error)
                if index == 0
                else "each message event's data is standard base64 of one JSON frame: "
                "output {data}, done {output, state}, error {code, message, retryable}",
            )
        if index > 0 and isinstance(seen.frame, InitFrame):
            return RuleResult(
                "frames_decode", "fail", f"frame {index + 1}: a second init", "send init once"
            )
    return RuleResult("frames_decode", "pass", f"{len(events)} frame(s) decoded")


def _no_final_rule(obs: Observation, events: list[Seen], init_timeout_s: float) -> RuleResult:
    from core.protocol import InitFrame

    hint = 'end with {"type":"done","output":...,"state":...} or an error frame'
    bad = next((seen for seen in events if seen.kind == "bad"), None)
    if bad is not None and bad.error is not None:
        detail = (
            f"frame {events.index(bad) + 1} did not decode, so no final frame counts "
            f"(the kit: {bad.error.code}, a pool error)"
        )
        return RuleResult("final_frame", "fail", detail, hint)
    if not events or not isinstance(events[0].frame, InitFrame):
        return RuleResult("final_frame", "skip", "no init")
    if obs.timed_out is not None:
        detail = "no final frame before --timeout (runner_no_response)"
        return RuleResult("final_frame", "fail", detail, hint + ", and ping while working")
    if obs.error is not None:
        detail = f"the stream broke after init: {obs.error.summary} (runner_no_response)"
        return RuleResult("final_frame", "fail", detail, hint)
    return RuleResult(
        "final_frame", "fail", "the stream ended after init without done (runner_no_response)", hint
    )


def _warnings(obs: Observation) -> list[RuleResult]:
    final = obs.final_index()
    if obs.status != 200 or final is None:
        return []
    events = obs.message_events()
    hint = (
        "stream the response: every message that runs longer than the init timeout will fail "
        "as a pool timeout (docs/protocol.md, hosts)"
    )
    if obs.content_length is not None:
        detail = f"the answer declared content-length {obs.content_length}: it was sent whole"
        return [RuleResult("buffered", "warn", detail, hint)]
    init, last = events[0], events[final]
    if init.read == last.read and init.at >= BUFFERED_AFTER_S:
        detail = f"init and the final frame arrived together, {_secs(init.at)} after the request"
        return [RuleResult("buffered", "warn", detail, hint)]
    return []
