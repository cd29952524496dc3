"""``infra.check`` rules on recorded streams (no sockets): bytes in, verdicts out."""

from __future__ import annotations

import pytest

from core.ports import ProbeResult
from infra.check_rules import RULES, Observation, Observer, evaluate
from infra.dev_faults import PING, message_event

INIT = message_event({"v": 1, "type": "init", "runner_id": "r-1"})
OUTPUT = message_event({"type": "output", "data": 1})
DONE = message_event({"type": "done", "output": 1, "state": {"n": 1}})
ERROR = message_event({"type": "error", "code": "boom", "message": "", "retryable": False})
PROBE_OK = ProbeResult(True, "r-0", 0.01, None)


def observe(
    *reads: tuple[float, bytes], ended: float | None = None, content_length: str | None = None
) -> Observation:
    observer = Observer()
    observer.obs.status = 200
    observer.obs.content_type = "text/event-stream; charset=utf-8"
    observer.obs.content_length = content_length
    for at, chunk in reads:
        observer.feed(at, chunk)
    if ended is not None:
        observer.end(ended)
    return observer.obs


def verdicts(obs: Observation) -> dict[str, str]:
    rules, _ = evaluate(PROBE_OK, obs, init_timeout_s=30.0)
    assert [rule.id for rule in rules] == list(RULES)
    return {rule.id: rule.status for rule in rules}


def failed(obs: Observation) -> set[str]:
    return {rule for rule, status in verdicts(obs).items() if status == "fail"}


def test_a_stream_split_mid_line_is_conformant() -> None:
    whole = INIT + PING + OUTPUT + DONE
    reads = [(0.01 * i, whole[i : i + 7]) for i in range(0, len(whole), 7)]
    obs = observe(*reads, ended=1.0)
    assert failed(obs) == set()
    assert [seen.kind for seen in obs.events] == ["frame", "ping", "frame", "frame"]


@pytest.mark.parametrize(
    ("reads", "ended", "expected"),
    [
        pytest.param([(0.0, INIT + ERROR)], 0.1, set(), id="error_frame_is_conformant"),
        pytest.param([(0.0, INIT + OUTPUT)], 0.1, {"final_frame"}, id="no_final"),
        pytest.param([(0.0, INIT + OUTPUT)], None, {"final_frame"}, id="no_final_still_open"),
        pytest.param([(0.0, INIT + DONE)], None, {"stream_ends"}, id="open_after_done"),
        pytest.param([(0.0, INIT + DONE + OUTPUT)], 0.1, {"nothing_after_final"}, id="after"),
        pytest.param([(0.0, INIT + DONE + PING)], 0.1, set(), id="a_ping_after_is_harmless"),
        pytest.param([(0.0, DONE)], 0.1, {"init_first"}, id="done_before_init"),
        pytest.param(
            [(0.0, INIT + INIT + DONE)], 0.1, {"frames_decode", "final_frame"}, id="second_init"
        ),
        pytest.param(
            [(0.0, INIT + b"data: %%%\n\n" + DONE)],
            0.1,
            {"frames_decode", "final_frame"},
            id="bad_base64_after_init",
        ),
        pytest.param([], 0.1, {"init_first"}, id="empty_stream"),
        pytest.param([(31.0, INIT + DONE)], 31.5, {"init_in_time"}, id="late_init"),
        pytest.param(
            [(0.0, b"event: stopping\ndata:\n\n")], 0.1, {"init_first"}, id="stopping_first"
        ),
    ],
)
def test_rules(reads: list[tuple[float, bytes]], ended: float | None, expected: set[str]) -> None:
    assert failed(observe(*reads, ended=ended)) == expected


def test_an_event_over_the_cap_is_too_large() -> None:
    observer = Observer(max_event_bytes=64)
    observer.feed(0.0, INIT)
    observer.feed(0.1, b"data: " + b"A" * 100)
    assert observer.obs.error is not None
    assert observer.obs.error.to_json()["reason"] == "too_large"


@pytest.mark.parametrize(
    ("reads", "content_length", "warned"),
    [
        pytest.param([(0.01, INIT), (0.02, DONE)], None, False, id="streamed"),
        pytest.param([(0.01, INIT + DONE)], None, False, id="fast_in_one_read"),
        pytest.param([(1.5, INIT + OUTPUT + DONE)], None, True, id="one_burst_after_1s"),
        pytest.param([(1.5, INIT), (1.6, DONE)], None, False, id="slow_init_then_streamed"),
        pytest.param([(0.01, INIT + DONE)], "120", True, id="content_length"),
    ],
)
def test_the_buffered_warning(
    reads: list[tuple[float, bytes]], content_length: str | None, warned: bool
) -> None:
    obs = observe(*reads, ended=2.0, content_length=content_length)
    rules, warnings = evaluate(PROBE_OK, obs, init_timeout_s=30.0)
    assert all(rule.status == "pass" for rule in rules)
    assert [w.id for w in warnings] == (["buffered"] if warned else [])
    assert all(w.status == "warn" and w.hint for w in warnings)
