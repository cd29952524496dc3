"""The actor ``error`` rule (core.actor_status): one row per situation of docs/api.md's table."""

from __future__ import annotations

from typing import Any

import pytest

from core.actor_status import ActorFacts, actor_error
from core.errors import (
    ActorFailed,
    InternalError,
    NoCapacity,
    OtherFailureReason,
    PoolErrorView,
    RunnerNoResponse,
    ServerlessConnectionError,
    ServerlessHttpError,
)
from core.models import ActorRecord

HTTP_503 = ServerlessHttpError(status_code=503, body="down")
POOL = PoolErrorView(
    error=HTTP_503, first_seen="2026-01-01T00:00:00Z", last_seen="2026-01-01T00:01:00Z", count=4
)
SILENT = RunnerNoResponse(runner_id="r-1")
FAILED = ActorFailed(error_code="boom", message="bad input")
HANG = ServerlessConnectionError(message="no init within 20 s", reason="timeout")

ROWS: list[Any] = [
    # --- a pending message cannot start ---
    pytest.param(ActorFacts(start_error=HTTP_503), POOL, POOL, id="start_failed_pool_down"),
    pytest.param(ActorFacts(start_error=HTTP_503), None, NoCapacity(), id="start_failed_pool_ok"),
    pytest.param(
        ActorFacts(failure_reason=NoCapacity()), POOL, POOL, id="waits_for_slot_pool_down"
    ),
    pytest.param(
        ActorFacts(failure_reason=NoCapacity()), None, NoCapacity(), id="waits_for_slot_pool_ok"
    ),
    pytest.param(
        ActorFacts(start_error=InternalError(message="kit bug")),
        None,
        NoCapacity(),
        id="start_failed_internal_error_pool_ok",
    ),
    # --- the runner went silent / the actor's code failed, until a later init ---
    pytest.param(ActorFacts(failure_reason=SILENT), None, SILENT, id="runner_no_response"),
    pytest.param(
        ActorFacts(failure_reason=SILENT), POOL, SILENT, id="runner_no_response_pool_down_idle"
    ),
    pytest.param(ActorFacts(actor_failed=FAILED), None, FAILED, id="actor_failed"),
    pytest.param(ActorFacts(actor_failed=FAILED), POOL, FAILED, id="actor_failed_pool_down_idle"),
    # --- a later blocked start is never hidden by an older failure ---
    pytest.param(
        ActorFacts(failure_reason=SILENT, start_error=HTTP_503),
        POOL,
        POOL,
        id="pool_error_after_runner_no_response",
    ),
    pytest.param(
        ActorFacts(actor_failed=FAILED, start_error=HTTP_503),
        POOL,
        POOL,
        id="pool_error_after_actor_failed",
    ),
    pytest.param(
        ActorFacts(actor_failed=FAILED, start_error=HTTP_503),
        None,
        NoCapacity(),
        id="start_failed_after_actor_failed_pool_ok",
    ),
    # --- nothing pending, nothing failed since ---
    pytest.param(ActorFacts(), None, None, id="nothing"),
    pytest.param(ActorFacts(), POOL, None, id="nothing_pending_pool_down"),
    # --- stopped: the error that stopped it, whatever its kind ---
    pytest.param(
        ActorFacts(status="stopped", stop_error=FAILED), None, FAILED, id="stopped_actor_failed"
    ),
    pytest.param(
        ActorFacts(status="stopped", stop_error=PoolErrorView(error=HANG)),
        None,
        PoolErrorView(error=HANG),
        id="stopped_by_pool_error_pool_recovered",
    ),
    pytest.param(
        ActorFacts(status="stopped", stop_error=SILENT, start_error=HTTP_503),
        POOL,
        SILENT,
        id="stopped_by_runner_no_response_wins_over_pool",
    ),
    pytest.param(
        ActorFacts(status="stopped", actor_failed=FAILED),
        None,
        FAILED,
        id="stopped_record_from_older_build_uses_history",
    ),
    # --- resumed: back to the ordinary rows ---
    pytest.param(ActorFacts(status="active", actor_failed=FAILED), None, FAILED, id="resumed"),
]


@pytest.mark.parametrize(("facts", "pool", "expected"), ROWS)
def test_actor_error_rule(facts: ActorFacts, pool: PoolErrorView | None, expected: Any) -> None:
    assert actor_error(facts, pool) == expected


@pytest.mark.parametrize(("facts", "pool", "expected"), ROWS)
def test_the_pool_status_is_needed_exactly_when_the_rule_reads_it(
    facts: ActorFacts, pool: PoolErrorView | None, expected: Any
) -> None:
    reads_pool = actor_error(facts, POOL) != actor_error(facts, None)
    assert facts.needs_pool_status == reads_pool


def test_a_stopped_record_from_an_older_build_still_shows_its_pool_error() -> None:
    facts = ActorFacts(status="stopped", start_error=HTTP_503)  # no stop_error, no history
    assert facts.needs_pool_status
    assert actor_error(facts, POOL) == POOL


def test_unknown_stored_reason_is_shown_unchanged() -> None:
    wire = {"code": "future_reason", "x": 1}
    got = actor_error(ActorFacts(failure_reason=OtherFailureReason(data=wire)), None)
    assert got is not None and got.to_json() == wire


def test_facts_of_a_record_read_every_stored_field() -> None:
    record = ActorRecord(
        actor_id="a",
        namespace="n",
        runner_name="r",
        status="stopped",
        failure_reason=SILENT,
        last_actor_error=FAILED,
        start_error=HTTP_503,
        stop_error=FAILED,
    )
    facts = ActorFacts.of(record)
    assert facts == ActorFacts(
        status="stopped",
        stop_error=FAILED,
        start_error=HTTP_503,
        failure_reason=SILENT,
        actor_failed=FAILED,
    )
    assert facts.has_facts and facts.start_blocked
    assert not ActorFacts().has_facts
