"""Chaos: several actors, many messages, an endpoint that picks a fault per request at random
(seeded), and an actor host that is SIGKILLed mid-execution and restarted; then the endpoint
heals and every dead letter is retried.

Real parts only: the moto server over HTTP (tables and queues from template.yaml), the dev
runner on 127.0.0.1, the actor host in its own process (``tests/integration/chaos_host.py``).
The invariants are checked on the records, the queues and what the endpoint received; nothing
is timed (waits are bounded polls that fail with a message).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.dynamodb.actors import DynamoDBActorStore
from adapters.dynamodb.messages import DynamoDBMessageStore
from adapters.dynamodb.runner_configs import DynamoDBRunnerConfigStore
from adapters.sqs import SqsMessageQueue
from core.models import (
    TERMINAL_STATUSES,
    ActorRecord,
    ErrorPolicy,
    MessageEnvelope,
    MessageRecord,
    RunnerConfig,
)
from infra.dev_runner import DevRunner, ReceivedRequest
from infra.moto_server import MotoServer
from tests.helpers.http import wait_for
from tests.helpers.settings import table_environ

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ACTORS = 4
MESSAGES = 8
SEED = 11
FAULTS = ["http_503", "close_before_init", "garbage_base64", "init_then_close", "hold:1500"]
STEPS = ["healthy"] * 6 + FAULTS
POLICY = ErrorPolicy(max_attempts=4, backoff_base_s=0.2, backoff_max_s=1.0)


class Received:
    """Every ``/start`` the dev runner answered, in arrival order (its own list keeps 200)."""

    def __init__(self, runner: DevRunner) -> None:
        self.runner = runner
        self.requests: list[ReceivedRequest] = []
        self._seen: set[int] = set()

    def collect(self) -> list[ReceivedRequest]:
        for request in self.runner.received:
            if id(request) not in self._seen:  # the objects stay alive in ``requests``
                self._seen.add(id(request))
                self.requests.append(request)
        return self.requests


@pytest.fixture
def host_env(
    moto_server: MotoServer, tables: dict[str, str], queues: dict[str, str], sqs: Any
) -> dict[str, str]:
    # A killed host's in-flight record comes back after the queue's visibility timeout: 3 s
    # here instead of the template's 30 minutes.
    sqs.set_queue_attributes(
        QueueUrl=queues["ActorMessagesQueue"], Attributes={"VisibilityTimeout": "3"}
    )
    return {
        **os.environ,
        **moto_server.environ(),
        "AWS_DEFAULT_REGION": "us-east-1",
        **table_environ(tables),
        "ACTOR_MESSAGES_QUEUE_URL": queues["ActorMessagesQueue"],
        "ACTOR_MESSAGES_DLQ_URL": queues["ActorMessagesDLQ"],
        "POOL_ERROR_CACHE_MS": "0",
        "DEADLINE_MARGIN_S": "1",
        "CONNECT_TIMEOUT_S": "2",
        "INIT_TIMEOUT_S": "2",
        "IDLE_TIMEOUT_S": "1",
        "SLOT_WAIT_S": "0.5",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "PYTHONPATH": str(ROOT),
    }


class Host:
    """The actor host process: start, SIGKILL, start again."""

    def __init__(self, env: dict[str, str], log: Any) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.chaos_host"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=self.log,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.kills += 1

    def check_alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "the chaos host died"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # its stacks, for a failure's report
            time.sleep(0.5)
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def host(host_env: dict[str, str], tmp_path: Path) -> Iterator[Host]:
    log_path = tmp_path / "chaos_host.log"
    with log_path.open("wb") as log:
        running = Host(host_env, log)
        try:
            yield running
        finally:
            running.stop()
            # On a failure, the host's own stderr is the first thing to read.
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])


def test_chaos_every_message_ends_recorded_in_order_and_counted(
    host: Host, host_env: dict[str, str], dynamodb: Any, sqs: Any
) -> None:
    actors = DynamoDBActorStore(host_env["ACTORS_TABLE"], client=dynamodb)
    messages = DynamoDBMessageStore(host_env["MESSAGES_TABLE"], client=dynamodb, actors=actors)
    configs = DynamoDBRunnerConfigStore(host_env["RUNNER_CONFIGS_TABLE"], client=dynamodb)
    queue = SqsMessageQueue(host_env["ACTOR_MESSAGES_QUEUE_URL"], client=sqs)
    dlq_url = host_env["ACTOR_MESSAGES_DLQ_URL"]

    with DevRunner(hang_s=2.0, slow_init_s=2.0, keepalive_s=0.2) as dev:
        received = Received(dev)

        def tick() -> None:
            # Collect on every poll: the dev runner keeps only its last 200 requests, and the
            # order check below needs every first start.
            host.check_alive()
            received.collect()

        configs.put(
            RunnerConfig(
                namespace="chaos",
                runner_name="pool",
                url=dev.url,
                allow_private_network=True,
                request_lifespan=5,
                max_runners=4,
                error_policy=POLICY,
            )
        )
        ids = [f"actor-{a}" for a in range(ACTORS)]
        for actor_id in ids:
            actors.create(ActorRecord(actor_id=actor_id, namespace="chaos", runner_name="pool"))
        dev.set_random(STEPS, seed=SEED)
        host.start()
        sent: dict[str, list[str]] = {actor_id: [] for actor_id in ids}
        for n in range(MESSAGES):  # interleaved across actors, in order within each
            for actor_id in ids:
                # Unique across actors: moto dedups FIFO ids queue-wide (the template's
                # DeduplicationScope is messageGroup, which moto does not emulate).
                message_id = f"{actor_id}-m{n:02d}"
                messages.create(MessageRecord(actor_id=actor_id, message_id=message_id, input=n))
                queue.send(MessageEnvelope(actor_id=actor_id, message_id=message_id))
                sent[actor_id].append(message_id)

        def records() -> list[MessageRecord]:
            out = [messages.get(a, m) for a in ids for m in sent[a]]
            return [r for r in out if r is not None]

        def all_final() -> bool:
            done = [r for r in records() if r.status in TERMINAL_STATUSES]
            return len(done) == ACTORS * MESSAGES

        # Kill the host while an execution is really in flight (a held run after init), twice.
        for _ in range(2):
            seen = len(received.collect())

            def in_flight(seen: int = seen) -> bool:
                fresh = received.collect()[seen:]
                return dev.active_streams > 0 and any(r.behaviour.startswith("hold") for r in fresh)

            wait_for(
                "an execution in flight on a held run",
                in_flight,
                describe=lambda: f"{[r.behaviour for r in received.collect()]} {_brief(records())}",
                timeout_s=20,
                pause_s=0.1,
                tick=tick,
            )
            host.kill()
            host.start()

        wait_for(
            "every message final",
            all_final,
            describe=lambda: _brief(records()),
            timeout_s=45,
            pause_s=0.1,
            tick=tick,
        )
        assert host.kills == 2

        # Nothing lost: every dead letter is in the DLQ (recorded, with its code), and nothing
        # is left queued for a final record.
        dead = {(r.actor_id, r.message_id): r for r in records() if r.status == "dead_lettered"}
        for record in dead.values():
            assert record.error is not None and record.error.get("code")
        letters: dict[tuple[str, str], dict[str, Any]] = {}

        def drain_dlq() -> bool:
            got = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)
            for m in got.get("Messages", []):
                body = json.loads(m["Body"])
                letters[(body["actor_id"], body["message_id"])] = body
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
            return set(letters) >= set(dead)

        wait_for("the dead letters in the DLQ", drain_dlq, timeout_s=10, pause_s=0.1, tick=tick)
        assert set(letters) == set(dead)

        # Order: each actor's messages started (first start) in the order they were sent.
        def first_starts(actor_id: str) -> list[str]:
            order: list[str] = []
            for request in received.collect():
                body = request.body if isinstance(request.body, dict) else {}
                if body.get("actor_id") == actor_id and body["message_id"] not in order:
                    order.append(body["message_id"])
            return order

        for actor_id in ids:
            assert first_starts(actor_id) == sent[actor_id], actor_id

        # Healing: the endpoint is healthy again and every dead letter is retried.
        dev.set_random([])
        for actor_id, message_id in sorted(dead):
            outcome, stored = messages.reopen(actor_id, message_id, now=_now())
            assert outcome == "reopened" and stored is not None
            queue.send(
                MessageEnvelope(actor_id=actor_id, message_id=message_id),
                dedup_id=f"{message_id}.r{stored.retries}",
            )
        wait_for(
            "every message succeeded",
            lambda: (
                all(r.status == "succeeded" for r in records())
                and len(records()) == ACTORS * MESSAGES
            ),
            describe=lambda: _brief(records()),
            timeout_s=30,
            pause_s=0.1,
            tick=tick,
        )

        # Exactly once: each actor's state counts exactly its succeeded messages.
        for actor_id in ids:
            actor = actors.get(actor_id)
            assert actor is not None
            assert actor.state == {
                "count": MESSAGES,
                "last_input": _last_input(records(), actor_id),
            }
            assert actor.state_version == MESSAGES
        # Nothing pending, nothing left queued.
        wait_for(
            "the inbox empty",
            lambda: _queue_empty(sqs, host_env["ACTOR_MESSAGES_QUEUE_URL"]),
            timeout_s=10,
            pause_s=0.1,
            tick=tick,
        )
        behaviours = {r.behaviour for r in received.collect()}
        assert {"http_503", "garbage_base64", "init_then_close", "close_before_init"} <= behaviours


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _last_input(records: list[MessageRecord], actor_id: str) -> Any:
    """The input of the actor's last committed message (the latest ``finished_at``)."""
    mine = [r for r in records if r.actor_id == actor_id and r.finished_at is not None]
    return max(mine, key=lambda r: r.finished_at or _now()).input


def _queue_empty(sqs: Any, url: str) -> bool:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return attrs == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }


def _brief(records: list[MessageRecord]) -> str:
    return " ".join(
        f"{r.actor_id[-1]}/{r.message_id}:{r.status}:{r.attempts}:{(r.error or {}).get('code', '')}"
        for r in records
    )
