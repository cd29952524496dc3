"""End to end on the embedded stack: what ``GET /actors`` shows in each situation of the error
table (docs/api.md), the gateway with a message already running, pool delete and re-create,
resume / delete actor / list messages, and stored records from a newer version.

The real handlers over HTTP, moto, the SQS poller and the pool manager ticker; each test has its
own loopback dev runner, scripted per request (``set_script``) or switched (``set_fault``), so
a retry left over from one test never takes another test's step. Nothing is timed: every wait
polls for a state and fails only when it never comes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from infra.dev_runner import DevRunner
from infra.local.stack import LocalStack
from tests.helpers.dev_runner import dev_runner_fixture
from tests.helpers.http import http, wait_for
from tests.helpers.local import FAST, quiet_stack

LONG_S = 60.0


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with quiet_stack(tick_s=1.0, environ=FAST, dev_runner=False) as running:
        yield running


dev = dev_runner_fixture("function", hang_s=4.0, slow_init_s=5.0)


def call(
    stack: LocalStack,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    status, _, answer = http(method, f"{stack.api_url}{path}", body, headers)
    return status, answer


def _kind(error: Any) -> Any:
    if not error:
        return None
    return error["code"]


class World:
    """One test's namespace, pool and helpers."""

    def __init__(self, stack: LocalStack, dev: DevRunner, **policy: Any) -> None:
        self.stack = stack
        self.dev = dev
        self.ns = f"t{uuid.uuid4().hex[:10]}"
        self.pool = "p"
        self.policy = {"backoff_base_s": 1, "backoff_max_s": 1, **policy}

    def put_pool(self, **extra: Any) -> Any:
        status, body = call(
            self.stack,
            "PUT",
            f"/runner-configs/{self.ns}/{self.pool}",
            {
                "url": self.dev.url,
                "allow_private_network": True,
                "request_lifespan": 30,
                "error_policy": self.policy,
                **extra,
            },
        )
        assert status == 200, body
        return body

    def actor(self, actor_id: str, **extra: Any) -> str:
        actor_id = f"{self.ns}-{actor_id}"
        status, body = call(
            self.stack,
            "POST",
            "/actors",
            {"actor_id": actor_id, "namespace": self.ns, "runner_name": self.pool, **extra},
        )
        assert status == 201, body
        return actor_id

    def mid(self, message_id: str) -> str:
        """A message id unique to this test. (moto's FIFO queue deduplicates across message
        groups, unlike the template's ``DeduplicationScope: messageGroup``.)"""
        return f"{self.ns}.{message_id}"

    def send(self, actor_id: str, message_id: str, *, wait: bool = False) -> tuple[int, Any]:
        return call(
            self.stack,
            "POST",
            f"/actors/{actor_id}/messages{'?wait=true' if wait else ''}",
            {"input": message_id},
            {"Idempotency-Key": self.mid(message_id)},
        )

    def message(self, actor_id: str, message_id: str) -> Any:
        path = f"/actors/{actor_id}/messages/{self.mid(message_id)}"
        status, body = call(self.stack, "GET", path)
        assert status == 200, body
        return body

    def status(self, actor_id: str, message_id: str) -> str | None:
        """The message's status, or ``None`` while it is not written yet."""
        path = f"/actors/{actor_id}/messages/{self.mid(message_id)}"
        status, body = call(self.stack, "GET", path)
        return str(body["status"]) if status == 200 else None

    def ids(self, page: Any) -> list[str]:
        """The short ids of a message page."""
        return [m["message_id"].removeprefix(f"{self.ns}.") for m in page["messages"]]

    def errors(self, actor_id: str) -> tuple[Any, Any]:
        """The actor's ``error`` on ``GET /actors/{id}`` and in ``GET /actors?namespace=``."""
        status, one = call(self.stack, "GET", f"/actors/{actor_id}")
        assert status == 200, one
        status, page = call(self.stack, "GET", f"/actors?namespace={self.ns}")
        assert status == 200, page
        listed = [a for a in page["actors"] if a["actor_id"] == actor_id]
        assert len(listed) == 1
        return one.get("error"), listed[0].get("error")

    def shows(self, actor_id: str, code: str | None, timeout_s: float = LONG_S) -> Any:
        """Wait until both routes show an ``error`` with ``code`` (``None``: no error)."""

        seen: list[Any] = []

        def same() -> Any:
            one, listed = self.errors(actor_id)
            seen[:] = [one, listed]
            # The same kind on both routes (a pool_error's count and last_seen may move on
            # between the two reads while the pool keeps failing).
            if _kind(one) == _kind(listed) == code:
                return one or {"code": None}
            return None

        try:
            return wait_for(f"{actor_id} to show {code}", same, timeout_s)
        except pytest.fail.Exception:
            raise AssertionError(f"{actor_id} never showed {code}; last seen {seen}") from None

    def ends(self, actor_id: str, message_id: str, status: str) -> Any:
        return wait_for(
            f"{message_id} to end {status}",
            lambda: (m := self.message(actor_id, message_id))["status"] == status and m,
            LONG_S,
        )

    def lasts_until_a_later_init(self, actor_id: str, failure: str, code: str) -> Any:
        """m1 meets ``failure`` and is dead-lettered: the actor shows ``code`` (returned) until m2
        succeeds on a healthy endpoint, then nothing."""
        self.dev.set_script([failure, "healthy"])
        self.send(actor_id, "m1")
        self.ends(actor_id, "m1", "dead_lettered")
        error = self.shows(actor_id, code)
        self.send(actor_id, "m2")
        self.ends(actor_id, "m2", "succeeded")
        self.shows(actor_id, None)
        return error


@pytest.fixture
def w(stack: LocalStack, dev: DevRunner) -> World:
    """A fresh namespace with its pool saved (the defaults)."""
    world = World(stack, dev)
    world.put_pool()
    return world


def enqueue_behind_the_api(stack: LocalStack, actor_id: str, message_id: str) -> None:
    """What ``POST .../messages`` writes (record, then envelope), without its checks."""
    import boto3

    from adapters.dynamodb.messages import DynamoDBMessageStore
    from adapters.sqs import SqsMessageQueue
    from core.models import MessageEnvelope, MessageRecord

    kwargs = {"endpoint_url": stack.moto.url, "region_name": "us-east-1"}
    DynamoDBMessageStore(
        stack.table_names["MessagesTable"], client=boto3.client("dynamodb", **kwargs)
    ).create(MessageRecord(actor_id=actor_id, message_id=message_id, input=message_id))
    SqsMessageQueue(
        stack.queue_urls["ActorMessagesQueue"], client=boto3.client("sqs", **kwargs)
    ).send(MessageEnvelope(actor_id=actor_id, message_id=message_id))


# --- one test per row of the table ---------------------------------------------------------------


def test_pool_down_shows_pool_error_while_retrying_then_nothing_after_the_dead_letter(
    stack: LocalStack, dev: DevRunner
) -> None:
    # Enough attempts and backoff that the retries last a while (the wait polls for them).
    w = World(stack, dev, max_attempts=6, backoff_base_s=2, backoff_max_s=2)
    w.put_pool()
    a = w.actor("a")
    dev.set_fault("http_503")  # probes fail too: the pool stays down
    w.send(a, "m1")
    error = w.shows(a, "pool_error")
    assert error["error"]["code"] == "serverless_http_error"
    assert error["error"]["status_code"] == 503
    assert error["count"] >= 1 and error["first_seen"] and error["last_seen"]
    w.ends(a, "m1", "dead_lettered")
    w.shows(a, None)  # nothing pending, nothing failed since: no stale pool_error


def test_start_failure_after_the_pool_recovered_shows_no_capacity_then_clears(
    stack: LocalStack, dev: DevRunner
) -> None:
    # A long backoff keeps the message pending after the pool manager's probes cleared it.
    w = World(stack, dev, backoff_base_s=20, backoff_max_s=20)
    w.put_pool()
    a = w.actor("a")
    dev.set_fault("http_503")
    w.send(a, "m1")
    w.shows(a, "pool_error")
    dev.set_fault(None)
    w.shows(a, "no_capacity")  # the pool has no active error (yet): the start still failed
    w.ends(a, "m1", "succeeded")
    w.shows(a, None)


def test_waiting_for_a_slot_shows_no_capacity_until_init(stack: LocalStack, dev: DevRunner) -> None:
    w = World(stack, dev)
    w.put_pool(max_runners=1)
    a, b = w.actor("a"), w.actor("b")
    dev.set_script(["hold:8000", "healthy"])
    w.send(a, "m1")
    wait_for("a's runner to start", lambda: w.status(a, "m1") == "running", LONG_S)
    w.send(b, "m2")
    w.shows(b, "no_capacity")
    w.ends(b, "m2", "succeeded")
    w.shows(b, None)
    w.shows(a, None)


def test_runner_no_response_lasts_until_a_later_init(stack: LocalStack, dev: DevRunner) -> None:
    w = World(stack, dev, max_attempts=1)
    w.put_pool()
    # Dead-lettered, yet shown: nothing ran since.
    error = w.lasts_until_a_later_init(w.actor("a"), "init_then_silence", "runner_no_response")
    assert error["runner_id"].startswith("dev-")


def test_a_later_pool_error_is_never_hidden_by_runner_no_response(
    stack: LocalStack, dev: DevRunner
) -> None:
    w = World(stack, dev, max_attempts=1)
    w.put_pool()
    a = w.actor("a")
    dev.set_script(["init_then_silence"])
    w.send(a, "m1")
    w.ends(a, "m1", "dead_lettered")
    w.shows(a, "runner_no_response")
    w.policy = {**w.policy, "max_attempts": 20, "backoff_base_s": 2, "backoff_max_s": 2}
    w.put_pool()
    dev.set_fault("http_503")
    w.send(a, "m2")
    error = w.shows(a, "pool_error")
    assert error["error"]["status_code"] == 503
    dev.set_fault(None)
    w.ends(a, "m2", "succeeded")
    w.shows(a, None)


def test_actor_failed_lasts_until_a_later_init(w: World) -> None:
    # An actor error is not retryable: dead-lettered at once.
    error = w.lasts_until_a_later_init(w.actor("a"), "actor_error", "actor_failed")
    assert error["error_code"] == "actor_crashed"


def test_stopped_actor_keeps_its_error_until_resumed_then_its_held_messages_run(
    stack: LocalStack, dev: DevRunner, w: World
) -> None:
    a = w.actor(
        "a", error_policy={"on_actor": "stop", "on_message": "dead_letter", "max_attempts": 1}
    )
    dev.set_fault("http_503")
    w.send(a, "m1")
    w.ends(a, "m1", "dead_lettered")
    wait_for("a to stop", lambda: call(stack, "GET", f"/actors/{a}")[1]["status"] == "stopped")
    # m2 was accepted before the stop (its record and envelope were already written when m1
    # failed); written directly here, since the API refuses messages to a stopped actor.
    enqueue_behind_the_api(stack, a, w.mid("m2"))
    held = wait_for(
        "m2 to be held",
        lambda: (m := w.message(a, "m2"))["disposition"] == "stop" and m,
        LONG_S,
    )
    assert held["status"] == "pending"
    error = w.shows(a, "pool_error")  # stopped by a pool error: that error, kept
    assert error["error"]["status_code"] == 503
    dev.set_fault(None)
    status, _ = call(stack, "GET", f"/runner-configs/{w.ns}/{w.pool}")
    wait_for(
        "the pool to recover",
        lambda: "pool_error" not in call(stack, "GET", f"/runner-configs/{w.ns}/{w.pool}")[1],
        LONG_S,
    )
    assert w.shows(a, "pool_error")["error"]["status_code"] == 503  # still: it is stopped
    status, body = w.send(a, "m3")
    assert (status, body["code"]) == (409, "actor_stopped")

    status, resumed = call(stack, "POST", f"/actors/{a}/resume")
    assert status == 200, resumed
    assert resumed["status"] == "active" and "error" not in resumed
    w.ends(a, "m2", "succeeded")
    w.shows(a, None)
    status, body = call(stack, "POST", f"/actors/{a}/resume")
    assert (status, body["code"]) == (409, "actor_not_stopped")


# --- the gateway -----------------------------------------------------------------------------


def test_gateway_waits_for_a_message_already_running_while_the_pool_fails(
    dev: DevRunner, w: World
) -> None:
    a, b = w.actor("a"), w.actor("b")
    dev.set_script(["hold:8000"])
    answer: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: answer.update(r=w.send(a, "m1", wait=True)))
    waiter.start()
    try:
        wait_for("a's runner to start", lambda: w.status(a, "m1") == "running", LONG_S)
        dev.set_fault("http_503")  # another actor's start fails now, and probes too
        w.send(b, "m2")
        w.shows(b, "pool_error")
    finally:
        waiter.join(timeout=LONG_S)
        dev.set_fault(None)
    status, body = answer["r"]
    assert status == 200, body
    assert body["status"] == "succeeded" and body["result"] == {"echo": "m1"}


def test_a_hanging_endpoint_is_a_pool_error_the_first_waiting_client_hears(
    dev: DevRunner, w: World
) -> None:
    a = w.actor("a")
    dev.set_fault("slow_init")  # silence before init, longer than INIT_TIMEOUT_S
    try:
        status, body = w.send(a, "m1", wait=True)
    finally:
        dev.set_fault(None)
    assert status == 503, body
    assert body["code"] == "actor_runner_failed"
    pool_error = body["metadata"]["pool_error"]["error"]
    assert (pool_error["code"], pool_error["reason"]) == ("serverless_connection_error", "timeout")


# --- pool lifecycle ----------------------------------------------------------------------------


def test_delete_and_recreate_a_runner_config(stack: LocalStack, dev: DevRunner) -> None:
    # The message keeps retrying (pending) through the delete and the re-create.
    w = World(stack, dev, max_attempts=30, backoff_base_s=2, backoff_max_s=2)
    w.put_pool()
    a, b = w.actor("a"), w.actor("b")
    dev.set_fault("http_503")
    status, body = w.send(a, "m1")
    assert status == 202, body
    try:
        w.shows(a, "pool_error")
    except AssertionError:
        raise
    status, _ = call(stack, "DELETE", f"/runner-configs/{w.ns}/{w.pool}")
    assert status == 204
    status, body = call(stack, "GET", f"/runner-configs/{w.ns}/{w.pool}")
    assert (status, body["code"]) == (404, "runner_config_not_found")

    status, body = w.send(a, "m2")
    assert (status, body["code"]) == (409, "pool_not_configured")
    status, body = call(stack, "GET", f"/actors/{a}/messages/{w.mid('m2')}")
    assert (status, body["code"]) == (404, "message_not_found")  # nothing written

    dev.set_fault(None)
    created = w.put_pool()
    assert "pool_error" not in created  # a re-created pool starts healthy
    status, body = w.send(b, "m3", wait=True)  # and its old actors work again
    assert status == 200, body
    assert body["status"] == "succeeded"
    w.ends(a, "m1", "succeeded")  # a's retried message too
    w.shows(a, None)


# --- actor lifecycle ---------------------------------------------------------------------------


def test_list_messages_and_delete_an_actor(stack: LocalStack, dev: DevRunner) -> None:
    w = World(stack, dev, backoff_base_s=30, backoff_max_s=30)
    w.put_pool()
    a = w.actor("a")
    for n in range(3):
        status, body = w.send(a, f"m{n}", wait=True)
        assert status == 200, body
    dev.set_fault("http_503")  # the next ones stay pending (long backoff)
    w.send(a, "m3")
    w.send(a, "m4")
    w.shows(a, "pool_error")

    status, page = call(stack, "GET", f"/actors/{a}/messages?limit=2")
    assert status == 200, page
    assert w.ids(page) == ["m4", "m3"]
    status, rest = call(stack, "GET", f"/actors/{a}/messages?limit=10&cursor={page['next_cursor']}")
    assert w.ids(rest) == ["m2", "m1", "m0"]
    assert rest["next_cursor"] is None
    status, done = call(stack, "GET", f"/actors/{a}/messages?status=succeeded")
    assert w.ids(done) == ["m2", "m1", "m0"]
    status, body = call(stack, "GET", f"/actors/{a}/messages?cursor=bm9wZQ")
    assert (status, body["code"]) == (422, "invalid_request")

    status, body = call(stack, "DELETE", f"/actors/{a}")
    assert status == 204 and body is None
    status, body = call(stack, "GET", f"/actors/{a}")
    assert (status, body["code"]) == (404, "actor_not_found")
    for message_id in ("m3", "m4"):
        m = w.ends(a, message_id, "discarded")
        assert m["disposition"] == "discard"
        assert m["error"]["code"] == "actor_deleted"
    assert w.message(a, "m0")["status"] == "succeeded"
    status, body = call(stack, "DELETE", f"/actors/{a}")
    assert (status, body["code"]) == (404, "actor_not_found")
    dev.set_fault(None)


# --- records from a newer version ----------------------------------------------------------------


def test_stored_tracker_items_from_a_newer_version_answer_no_500_and_the_round_goes_on(
    stack: LocalStack, dev: DevRunner
) -> None:
    import boto3

    w = World(stack, dev)
    pools = {"newer": w.ns, "garbled": w.ns, "down": w.ns}
    for name in pools:
        w.pool = name
        w.put_pool()
    w.pool = "newer"
    a = w.actor("a")
    table = stack.table_names["PoolErrorsTable"]
    client = boto3.client("dynamodb", endpoint_url=stack.moto.url, region_name="us-east-1")
    newer = '{"code":"serverless_http_error","status_code":503,"body":"x","retry_after_s":3}'

    def item(name: str, error: str) -> dict[str, Any]:
        return {
            "pool_id": {"S": f"{w.ns}/{name}"},
            "version": {"N": "7"},
            "successes": {"N": "0"},
            "threshold": {"N": "3"},
            "error": {"S": error},
            "error_code": {"S": "serverless_http_error"},
            "first_seen": {"S": "2026-01-01T00:00:00.000000Z"},
            "last_seen": {"S": "2026-01-01T00:00:00.000000Z"},
            "count": {"N": "1"},
            "retry_after_s": {"N": "3"},
        }

    # Hold back the pool manager's probes of two pools (not due for an hour), so what is read
    # below is what was written; the third pool is due at once.
    probes = stack.table_names["PoolProbesTable"]
    later = str(time.time() + 3600)
    for name in ("newer", "garbled"):
        client.put_item(
            TableName=probes,
            Item={
                "pool_id": {"S": f"{w.ns}/{name}"},
                "failures": {"N": "1"},
                "next_probe_at": {"N": later},
            },
        )
    client.put_item(TableName=table, Item=item("newer", newer))
    client.put_item(TableName=table, Item=item("garbled", '{"code": 7}'))
    client.put_item(TableName=table, Item=item("down", '{"code":"internal_error","message":"m"}'))

    # (The API's tracker view may be up to 500 ms old: wait for the written record to show.)
    def config_of(name: str) -> Any:
        status, config = call(stack, "GET", f"/runner-configs/{w.ns}/{name}")
        assert status == 200, config
        return config

    config = wait_for(
        "the record to show", lambda: (c := config_of("newer")).get("pool_error") and c
    )
    wait_for("the garbled record to show", lambda: config_of("garbled").get("pool_error"))
    assert json.dumps(config["pool_error"]["error"], separators=(",", ":")) == newer
    status, listing = call(stack, "GET", f"/runner-configs?namespace={w.ns}")
    assert status == 200, listing
    by_name = {c["runner_name"]: c for c in listing["runner_configs"]}
    assert by_name["garbled"]["pool_error"]["error"]["code"] == "record_undecodable"
    status, actors = call(stack, "GET", f"/actors?namespace={w.ns}")
    assert status == 200, actors  # never "422 bad cursor" with no cursor sent
    status, body = w.send(a, "m1", wait=True)
    assert status in (200, 503), body  # an answer, never a 500
    if status == 503:
        assert body["code"] == "actor_runner_failed"

    def clear() -> set[str]:
        status, listing = call(stack, "GET", f"/runner-configs?namespace={w.ns}")
        assert status == 200, listing
        return {c["runner_name"] for c in listing["runner_configs"] if "pool_error" not in c}

    # The round goes on next to the garbled record: the due pool is probed and clears.
    wait_for("the due pool to clear", lambda: "down" in clear(), LONG_S)
    assert {"newer", "garbled"}.isdisjoint(clear())
    # Once due, the other two are probed as well and a real outcome replaces each record.
    for name in ("newer", "garbled"):
        client.delete_item(TableName=probes, Key={"pool_id": {"S": f"{w.ns}/{name}"}})
    wait_for("every pool to clear", lambda: clear() == {"newer", "garbled", "down"}, LONG_S)
    w.ends(a, "m1", "succeeded")


def test_an_actor_item_that_does_not_decode_is_a_409_skipped_in_listings_and_deletable(
    stack: LocalStack, w: World
) -> None:
    import boto3

    good = w.actor("good")
    table = stack.table_names["ActorsTable"]
    client = boto3.client("dynamodb", endpoint_url=stack.moto.url, region_name="us-east-1")
    bad = f"bad-{uuid.uuid4().hex[:8]}"
    client.put_item(
        TableName=table,
        Item={
            "actor_id": {"S": bad},
            "namespace": {"S": w.ns},
            "runner_name": {"S": w.pool},
            "status": {"S": "hibernating"},  # a status from a far newer build
            "state_version": {"N": "1"},
        },
    )
    status, body = call(stack, "GET", f"/actors/{bad}")
    assert (status, body["code"]) == (409, "actor_record_undecodable"), body
    status, listing = call(stack, "GET", f"/actors?namespace={w.ns}")
    assert status == 200, listing
    assert [actor["actor_id"] for actor in listing["actors"]] == [good]
    status, body = call(stack, "DELETE", f"/actors/{bad}")
    assert status == 204, body
    assert call(stack, "GET", f"/actors/{bad}")[0] == 404
