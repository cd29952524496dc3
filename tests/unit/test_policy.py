"""The failure policy as pure decisions: retryable errors, backoff, the three answers."""

from __future__ import annotations

import pytest

from core.errors import (
    ActorFailed,
    InternalError,
    RunnerNoResponse,
    ServerlessConnectionError,
    ServerlessHttpError,
    ServerlessInvalidBase64,
    ServerlessInvalidPayload,
    ServerlessStreamEndedEarly,
)
from core.execution import reply_body
from core.models import ErrorPolicy, MessageRecord
from core.policy import (
    SQS_MAX_VISIBILITY_S,
    backoff_s,
    decide,
    fits_deadline,
    infra_backoff_s,
    is_retryable,
    visibility_timeout_s,
)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        pytest.param(ServerlessHttpError(status_code=503), True, id="http_503"),
        pytest.param(ServerlessHttpError(status_code=500), True, id="http_500"),
        pytest.param(ServerlessHttpError(status_code=408), True, id="http_408"),
        pytest.param(ServerlessHttpError(status_code=429), True, id="http_429"),
        pytest.param(ServerlessHttpError(status_code=400), False, id="http_400"),
        pytest.param(ServerlessHttpError(status_code=404), False, id="http_404"),
        pytest.param(ServerlessHttpError(status_code=499), False, id="http_499"),
        pytest.param(ServerlessInvalidBase64(raw_payload="!!"), False, id="invalid_base64"),
        pytest.param(
            ServerlessInvalidPayload(message="x", raw_payload="{}"), False, id="invalid_payload"
        ),
        pytest.param(ServerlessStreamEndedEarly(), True, id="ended_early"),
        pytest.param(
            ServerlessConnectionError(message="refused", reason="connect"), True, id="connect"
        ),
        pytest.param(RunnerNoResponse(runner_id="r"), True, id="runner_no_response"),
        pytest.param(InternalError(message="bug"), True, id="internal"),
    ],
)
def test_is_retryable(error: object, retryable: bool) -> None:
    assert is_retryable(error) is retryable


@pytest.mark.parametrize("flag", [True, False])
def test_actor_failed_follows_the_frame_flag(flag: bool) -> None:
    assert is_retryable(ActorFailed(error_code="boom"), actor_retryable=flag) is flag


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        pytest.param(1, 1.0, 2.0, id="first_full"),
        pytest.param(2, 1.0, 4.0, id="second_doubles"),
        pytest.param(3, 0.5, 4.0, id="jitter_halves"),
        pytest.param(1, 0.0, 0.0, id="jitter_zero"),
        pytest.param(20, 1.0, 100.0, id="capped"),
        pytest.param(10_000, 1.0, 100.0, id="huge_attempt_no_overflow"),
        pytest.param(0, 1.0, 2.0, id="attempt_zero_is_first"),
    ],
)
def test_backoff_full_jitter(attempt: int, rand: float, expected: float) -> None:
    assert backoff_s(attempt, base_s=2.0, max_s=100.0, rand=rand) == pytest.approx(expected)


PROBE: dict[str, float] = {"base_s": 60.0, "max_s": 900.0, "jitter": 0.1}
"""The pool manager's probe backoff (settings' defaults, ``PROBE_JITTER``)."""
SMALL: dict[str, float] = {"base_s": 2.0, "max_s": 100.0}


@pytest.mark.parametrize(
    ("attempt", "kwargs", "expected"),
    [
        pytest.param(1, {**PROBE, "rand": 1.0}, 60.0, id="probe_first"),
        pytest.param(3, {**PROBE, "rand": 1.0}, 240.0, id="probe_third"),
        pytest.param(10, {**PROBE, "rand": 1.0}, 900.0, id="probe_capped"),
        pytest.param(10_000, {**PROBE, "rand": 1.0}, 900.0, id="probe_huge_no_overflow"),
        pytest.param(1, {**PROBE, "rand": 0.0}, 54.0, id="probe_jitter_at_most_a_tenth"),
        pytest.param(2, {**PROBE, "rand": 0.5}, 114.0, id="probe_half_jitter"),
        pytest.param(3, {**SMALL, "jitter": 0.0, "rand": 0.3}, 8.0, id="no_jitter_ignores_rand"),
        pytest.param(3, {**SMALL, "jitter": 7.0, "rand": 0.25}, 2.0, id="jitter_clamped"),
        pytest.param(3, {**SMALL, "jitter": 0.5, "rand": 1.0, "factor": 1.5}, 4.5, id="factor"),
        pytest.param(3, {**SMALL, "rand": -2.0}, 0.0, id="rand_clamped"),
    ],
)
def test_backoff_options(attempt: int, kwargs: dict[str, float], expected: float) -> None:
    assert backoff_s(attempt, **kwargs) == pytest.approx(expected)


def test_full_jitter_is_exactly_rand_times_the_ceiling() -> None:
    # The SQS visibility is rounded up: 1 - (1 - r) != r in floats would add a second.
    assert backoff_s(1, base_s=10.0, max_s=60.0, rand=0.3) == 10.0 * 0.3


def test_visibility_timeout_rounds_up_and_clamps() -> None:
    assert visibility_timeout_s(0.0) == 0
    assert visibility_timeout_s(0.2) == 1
    assert visibility_timeout_s(1e9) == SQS_MAX_VISIBILITY_S
    assert visibility_timeout_s(-3) == 0


def test_infra_backoff_grows_with_receive_count() -> None:
    assert infra_backoff_s(1, rand=1.0) == 1.0
    assert infra_backoff_s(3, rand=1.0) == 4.0
    assert infra_backoff_s(50, rand=1.0) == 60.0


RETRY = ErrorPolicy(max_attempts=3, backoff_base_s=1.0, backoff_max_s=10.0)
DISCARD = ErrorPolicy(on_message="discard")
DEAD_LETTER = ErrorPolicy(on_message="dead_letter")
STOP = ErrorPolicy(on_actor="stop", max_attempts=2)
STOP_AND_DISCARD = ErrorPolicy(on_actor="stop", on_message="discard")


@pytest.mark.parametrize(
    ("policy", "attempts", "retryable", "expected"),
    [
        pytest.param(RETRY, 1, True, "retry continue pending", id="retry_first"),
        pytest.param(RETRY, 2, True, "retry continue pending", id="retry_second"),
        pytest.param(RETRY, 3, True, "dead_letter continue dead_lettered", id="last_attempt"),
        pytest.param(RETRY, 1, False, "dead_letter continue dead_lettered", id="not_retryable"),
        pytest.param(DISCARD, 1, True, "discard continue discarded", id="discard"),
        pytest.param(DEAD_LETTER, 1, True, "dead_letter continue dead_lettered", id="at_once"),
        pytest.param(STOP, 1, True, "retry continue pending", id="stop_waits_for_final"),
        pytest.param(STOP, 2, True, "dead_letter stop dead_lettered", id="stop_on_final"),
        pytest.param(STOP_AND_DISCARD, 1, True, "discard stop discarded", id="stop_and_discard"),
    ],
)
def test_decide(policy: ErrorPolicy, attempts: int, retryable: bool, expected: str) -> None:
    """``expected`` is the message's fate, the actor's, and the record's status."""
    decision = decide(policy, attempts=attempts, retryable=retryable, rand=1.0)
    assert f"{decision.message} {decision.actor} {decision.status}" == expected
    final = not expected.endswith(" pending")  # only a retry leaves the message pending
    assert decision.final is final
    assert decision.reply is final


def test_decide_retry_delay_is_jittered_backoff() -> None:
    d = decide(RETRY, attempts=2, retryable=True, rand=0.25)
    assert d.delay_s == pytest.approx(0.5)
    assert decide(RETRY, attempts=3, retryable=True, rand=0.25).delay_s == 0.0


@pytest.mark.parametrize(
    ("remaining", "margin", "lifespan", "ok"),
    [
        pytest.param(100.0, 10.0, 90.0, True, id="exactly_fits"),
        pytest.param(100.0, 10.0, 91.0, False, id="one_second_short"),
        pytest.param(5.0, 0.0, 1.0, True, id="no_margin"),
    ],
)
def test_fits_deadline(remaining: float, margin: float, lifespan: float, ok: bool) -> None:
    assert fits_deadline(remaining, margin_s=margin, lifespan_s=lifespan) is ok


def test_reply_body_success_and_failure() -> None:
    ok = MessageRecord(actor_id="a", message_id="m", status="succeeded", result={"x": 1})
    assert reply_body(ok) == {
        "v": 1,
        "actor_id": "a",
        "message_id": "m",
        "status": "succeeded",
        "attempts": 0,
        "result": {"x": 1},
    }
    bad = MessageRecord(
        actor_id="a",
        message_id="m",
        status="dead_lettered",
        attempts=3,
        error={"code": "serverless_http_error", "status_code": 503, "body": ""},
        disposition="dead_letter",
    )
    body = reply_body(bad)
    assert body["error"] == {"code": "serverless_http_error", "status_code": 503, "body": ""}
    assert body["disposition"] == "dead_letter"
    assert "result" not in body
