"""Actor lifecycle routes, pool lifecycle and the gateway's started rule, on in-memory parts.

(The same behaviours run end to end on the local stack in
tests/integration/test_actor_lifecycle_e2e.py.)
"""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ActorFailed, PoolErrorView, ServerlessHttpError
from tests.helpers.api import HTTP_503, POOL, World, assert_error, make_world, post_wait
from tests.helpers.apigw import response_json


@pytest.fixture
def ready() -> World:
    world = make_world()
    world.put_config()
    world.create_actor()
    return world


def send(w: World, message_id: str, actor_id: str = "a1") -> dict[str, Any]:
    return w.call(
        "POST",
        f"/actors/{actor_id}/messages",
        body={"input": message_id},
        headers={"Idempotency-Key": message_id},
    )


def stop(w: World, actor_id: str = "a1") -> None:
    w.actors.set_status(
        actor_id, "stopped", stop_error=ActorFailed(error_code="boom", message="bad")
    )


# --- list messages ------------------------------------------------------------------------------


def test_list_messages_newest_first_with_pages_and_status(ready: World) -> None:
    for n in range(5):
        assert send(ready, f"m{n}")["statusCode"] == 202
        ready.clock.sleep(1.0)
    ready.host_finishes("a1", "m1", {"ok": 1})
    first = response_json(ready.call("GET", "/actors/a1/messages", query={"limit": "2"}))
    assert [m["message_id"] for m in first["messages"]] == ["m4", "m3"]
    assert first["next_cursor"]
    second = response_json(
        ready.call(
            "GET", "/actors/a1/messages", query={"limit": "2", "cursor": first["next_cursor"]}
        )
    )
    assert [m["message_id"] for m in second["messages"]] == ["m2", "m1"]
    done = response_json(ready.call("GET", "/actors/a1/messages", query={"status": "succeeded"}))
    assert [m["message_id"] for m in done["messages"]] == ["m1"]
    assert done["next_cursor"] is None


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"cursor": "!!"}, id="cursor_not_base64"),
        pytest.param({"cursor": "e30"}, id="cursor_empty_object"),
        pytest.param({"status": "nope"}, id="unknown_status"),
        pytest.param({"limit": "0"}, id="limit_zero"),
    ],
)
def test_list_messages_bad_query_is_422(ready: World, query: dict[str, str]) -> None:
    assert_error(ready.call("GET", "/actors/a1/messages", query=query), 422, "invalid_request")


def test_list_messages_of_a_missing_actor_is_404(ready: World) -> None:
    assert_error(ready.call("GET", "/actors/nope/messages"), 404, "actor_not_found")


# --- resume -------------------------------------------------------------------------------------


def test_resume_requeues_held_messages_in_order(ready: World) -> None:
    for n in range(3):
        send(ready, f"m{n}")
        ready.clock.sleep(1.0)
    stop(ready)
    sent_before = len(ready.queue.sent)
    answer = ready.call("POST", "/actors/a1/resume")
    assert answer["statusCode"] == 200
    body = response_json(answer)
    assert body["status"] == "active" and "error" not in body
    requeued = [e.message_id for e in ready.queue.sent[sent_before:]]
    assert requeued == ["m0", "m1", "m2"]


def test_resume_of_an_active_actor_is_409(ready: World) -> None:
    body = assert_error(ready.call("POST", "/actors/a1/resume"), 409, "actor_not_stopped")
    assert body["metadata"]["status"] == "active"
    assert_error(ready.call("POST", "/actors/nope/resume"), 404, "actor_not_found")


def test_stopped_actor_shows_the_error_that_stopped_it_until_resumed(ready: World) -> None:
    ready.actors.set_status(
        "a1", "stopped", stop_error=PoolErrorView(error=ServerlessHttpError(status_code=500))
    )
    got = response_json(ready.call("GET", "/actors/a1"))
    assert got["error"]["code"] == "pool_error"
    assert got["error"]["error"]["status_code"] == 500
    ready.call("POST", "/actors/a1/resume")
    assert "error" not in response_json(ready.call("GET", "/actors/a1"))


# --- delete -------------------------------------------------------------------------------------


def test_delete_actor_discards_pending_messages(ready: World) -> None:
    send(ready, "m0")
    send(ready, "m1")
    ready.host_finishes("a1", "m0", {"ok": 1})
    answer = ready.call("DELETE", "/actors/a1")
    assert answer["statusCode"] == 204 and not answer["body"]
    assert_error(ready.call("GET", "/actors/a1"), 404, "actor_not_found")
    m0, m1 = ready.messages.get("a1", "m0"), ready.messages.get("a1", "m1")
    assert m0 is not None and m0.status == "succeeded"
    assert m1 is not None and (m1.status, m1.disposition) == ("discarded", "discard")
    assert m1.error is not None and m1.error["code"] == "actor_deleted"
    assert_error(ready.call("DELETE", "/actors/a1"), 404, "actor_not_found")


# --- pool lifecycle -----------------------------------------------------------------------------


def test_message_to_an_actor_whose_pool_has_no_config_is_409_and_writes_nothing(
    ready: World,
) -> None:
    ready.tracker.report_error(POOL, HTTP_503)
    assert ready.call("DELETE", "/runner-configs/ns/echo")["statusCode"] == 204
    sent = len(ready.queue.sent)
    body = assert_error(send(ready, "m9"), 409, "pool_not_configured")
    assert body["metadata"]["pool"] == POOL.id
    assert ready.messages.get("a1", "m9") is None
    assert len(ready.queue.sent) == sent


def test_deleted_then_recreated_pool_starts_healthy(ready: World) -> None:
    ready.tracker.report_error(POOL, HTTP_503)
    ready.probes.record_failure(POOL, failures=3, next_probe_at=1e12, error_code="x")
    ready.call("DELETE", "/runner-configs/ns/echo")
    assert ready.tracker.active_error(POOL) is None
    assert ready.probes.get(POOL) is None
    assert "pool_error" not in response_json(ready.put_config())
    ready.clock.sleep(1.0)
    answer = post_wait(ready)  # nothing fails fast on the old error
    assert_error(answer, 503, "actor_ready_timeout")


def test_saving_a_new_config_forgets_an_old_tracker_error(ready: World) -> None:
    other = POOL.model_copy(update={"runner_name": "fresh"})
    ready.tracker.report_error(other, HTTP_503)  # e.g. left by a pool deleted before upgrade
    assert "pool_error" not in response_json(ready.put_config("fresh"))
    ready.tracker.report_error(POOL, HTTP_503)
    assert "pool_error" in response_json(ready.put_config())  # a replaced config keeps it


# --- gateway ------------------------------------------------------------------------------------


def test_gateway_waits_for_a_message_already_running_whatever_the_pool_does(
    ready: World,
) -> None:
    def runner_started() -> None:
        message_id = ready.queue.sent[-1].message_id
        claim = ready.messages.claim(
            "a1", message_id, owner="host", lease_s=60, now=ready.clock.now()
        )
        assert claim.outcome == "claimed"
        ready.messages.mark_running(
            "a1", message_id, owner="host", runner_id="r-1", now=ready.clock.now()
        )
        # Meanwhile another actor's start fails: the pool gets an active error.
        ready.tracker.report_error(POOL, HTTP_503)

    def done() -> None:
        ready.messages.commit_success(
            "a1",
            ready.queue.sent[-1].message_id,
            owner="host",
            expected_version=0,
            state={},
            result={"ok": True},
            now=ready.clock.now(),
        )

    ready.clock.at(0.5, runner_started)
    ready.clock.at(8.0, done)
    answer = post_wait(ready)
    assert answer["statusCode"] == 200, answer
    assert response_json(answer)["result"] == {"ok": True}
