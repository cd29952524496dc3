"""The actor host's test stacks: ``Env`` on in-memory stores with a mock SSE transport (unit), and
``Stack`` on the moto server with the dev runner (integration), with their fixtures."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from adapters.clock import SYSTEM_CLOCK
from adapters.dynamodb.actors import DynamoDBActorStore
from adapters.dynamodb.messages import DynamoDBMessageStore
from adapters.dynamodb.runner_configs import DynamoDBRunnerConfigStore
from adapters.memory.actors import InMemoryActorStore
from adapters.memory.messages import InMemoryMessageStore
from adapters.memory.pool_errors import InMemoryPoolErrorStore
from adapters.memory.runner_configs import InMemoryRunnerConfigStore
from adapters.memory.slots import InMemorySlotStore
from adapters.runner.attempt import StartLimits
from adapters.runner.client import AsyncRunnerClient
from adapters.runner.transport import StartTarget
from adapters.settings import Settings
from adapters.sqs import SqsDeadLetterQueue, SqsMessageQueue, SqsReplies
from adapters.tracker import build_tracker
from core.models import ActorRecord, MessageEnvelope, MessageRecord, RunnerConfig
from functions.actor_host.app import build_deps, get_logger, handle
from functions.actor_host.deps import HostDeps
from infra.dev_runner import DevRunner
from tests.fixtures.sqs_events import (
    FakeLambdaContext,
    envelope_body,
    receive_event,
    sqs_event,
    sqs_record,
)
from tests.helpers.settings import table_settings

# --- unit: in-memory stores, the runner behind httpx.MockTransport ------------------------------


def frame(data: dict[str, Any]) -> bytes:
    """One SSE event carrying ``data`` as base64 JSON."""
    return b"data: " + base64.b64encode(json.dumps(data).encode()) + b"\n\n"


class FakeRunner:
    """A serverless endpoint as an httpx MockTransport handler; the path picks the behaviour."""

    def __init__(self) -> None:
        self.starts = 0
        self.during: Any = None  # called while the runner "runs": a concurrent writer

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.starts += 1
        if self.during is not None:
            self.during()
        body = json.loads(request.content)
        path = request.url.path
        if "/http_503/" in path:
            return httpx.Response(503, text="busy")
        if "/actor_error/" in path:
            content = frame({"v": 1, "type": "init", "runner_id": "r1"}) + frame(
                {"type": "error", "code": "boom", "message": "bad", "retryable": False}
            )
        else:
            state = body["state"] or {}
            content = frame({"v": 1, "type": "init", "runner_id": "r1"}) + frame(
                {
                    "type": "done",
                    "output": {"echo": body["input"]},
                    "state": {"count": state.get("count", 0) + 1},
                }
            )
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)


class RecordingSqs:
    """A boto3-shaped SQS client that records calls (the adapter code under it is real)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("visibility", kw))
        return {"Successful": [{"Id": e["Id"]} for e in kw["Entries"]], "Failed": []}

    def send_message(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("send", kw))
        return {"MessageId": "x"}

    def visibilities(self) -> dict[str, int]:
        return {
            e["ReceiptHandle"]: e["VisibilityTimeout"]
            for name, kw in self.calls
            if name == "visibility"
            for e in kw["Entries"]
        }


class Env:
    """``handle`` on in-memory stores, a ``FakeRunner`` and a ``RecordingSqs``."""

    def __init__(self, rand: float = 0.5) -> None:
        self.actors = InMemoryActorStore(in_lambda=False)
        self.slots = InMemorySlotStore(in_lambda=False)
        self.messages = InMemoryMessageStore(actors=self.actors, slots=self.slots, in_lambda=False)
        self.configs = InMemoryRunnerConfigStore(in_lambda=False)
        self.runner = FakeRunner()
        self.sqs = RecordingSqs()
        settings = Settings(deadline_margin_s=10.0)
        self.tracker = build_tracker(settings, store=InMemoryPoolErrorStore(in_lambda=False))
        self.deps = HostDeps(
            settings=settings,
            actors=self.actors,
            messages=self.messages,
            configs=self.configs,
            slots=self.slots,
            tracker=self.tracker,
            runner=lambda: AsyncRunnerClient(
                StartLimits(),
                transport=httpx.MockTransport(self.runner.handle),
                resolver=lambda host, port: ["93.184.216.34"],
            ),
            target_for=StartTarget.from_config,
            queue=SqsMessageQueue("https://sqs.test/q.fifo", client=self.sqs),
            dlq=SqsDeadLetterQueue("https://sqs.test/dlq.fifo", client=self.sqs),
            replies=SqsReplies(client=self.sqs),
            logger=get_logger(),
            rand=lambda: rand,
            clock=SYSTEM_CLOCK,
        )

    def setup(self, path: str = "ok", **config: Any) -> None:
        self.configs.put(
            RunnerConfig(
                namespace="ns", runner_name="p", url=f"https://runner.example.com/{path}/", **config
            )
        )
        self.actors.create(ActorRecord(actor_id="a1", namespace="ns", runner_name="p"))
        self.messages.create(MessageRecord(actor_id="a1", message_id="m1", input="hi"))

    def run(self, remaining_ms: int = 900_000, **record: Any) -> dict[str, Any]:
        rec = sqs_record(
            envelope_body("a1", "m1"), group_id="a1", receipt_handle="rh-1", message_id="sq-1"
        )
        rec.update(record)
        return handle(sqs_event(rec), FakeLambdaContext(remaining_ms), self.deps)


# --- integration: the moto server and the dev runner --------------------------------------------


LIMITS = StartLimits(connect_timeout_s=2.0, init_timeout_s=2.0, idle_timeout_s=0.6)


@pytest.fixture(scope="module")
def dev() -> Iterator[DevRunner]:
    """The dev runner endpoint on 127.0.0.1, one per module."""
    with DevRunner(hang_s=3.0, slow_init_s=3.0) as runner:
        yield runner


@dataclass
class Stack:
    """Everything one test drives: real stores and queues, and the host's deps."""

    deps: HostDeps
    actors: DynamoDBActorStore
    messages: DynamoDBMessageStore
    configs: DynamoDBRunnerConfigStore
    queue: SqsMessageQueue
    sqs: Any
    queues: dict[str, str]
    settings: Settings

    def pool(self, name: str, url: str, **kw: Any) -> RunnerConfig:
        kw.setdefault("allow_private_network", True)  # the dev runner is on 127.0.0.1
        config = RunnerConfig(namespace="ns", runner_name=name, url=url, **kw)
        self.configs.put(config)
        return config

    def actor(self, actor_id: str, pool: str, **kw: Any) -> ActorRecord:
        return self.actors.create(
            ActorRecord(actor_id=actor_id, namespace="ns", runner_name=pool, **kw)
        )

    def send(self, actor_id: str, message_id: str, value: Any = None, **kw: Any) -> None:
        self.messages.create(
            MessageRecord(actor_id=actor_id, message_id=message_id, input=value, **kw)
        )
        self.queue.send(MessageEnvelope(actor_id=actor_id, message_id=message_id))

    def receive(self, at_least: int = 0) -> dict[str, Any]:
        """One event; moto's FIFO receive gives one group at a time, so merge a few receives
        (Lambda's poller also batches several groups)."""
        event = receive_event(self.sqs, self.queue.queue_url)
        while 0 < len(event["Records"]) < at_least:
            more = receive_event(self.sqs, self.queue.queue_url)["Records"]
            if not more:
                break
            event["Records"].extend(more)
        return event

    def run(self, event: dict[str, Any] | None = None, remaining_ms: int = 900_000) -> Any:
        event = self.receive() if event is None else event
        return handle(event, FakeLambdaContext(remaining_ms), self.deps)

    def reply_queue(self) -> str:
        url: str = self.sqs.create_queue(QueueName=f"runner-kit-replies-{uuid.uuid4().hex[:8]}")[
            "QueueUrl"
        ]
        return url

    def drain(self, url: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            msgs = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(m)
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def stack(
    tables_for: Callable[..., dict[str, str]], queues: dict[str, str], dynamodb: Any, sqs: Any
) -> Stack:
    """The actor host on this test's tables and queues (the probe table it never reads)."""
    tables = tables_for(
        "ActorsTable", "MessagesTable", "RunnerConfigsTable", "SlotsTable", "PoolErrorsTable"
    )
    settings = Settings(
        **table_settings(tables),
        actor_messages_queue_url=queues["ActorMessagesQueue"],
        actor_messages_dlq_url=queues["ActorMessagesDLQ"],
        deadline_margin_s=1.0,
        pool_error_cache_ms=0,
    )
    deps = build_deps(
        settings,
        dynamodb=dynamodb,
        sqs=sqs,
        runner=lambda: AsyncRunnerClient(LIMITS),
        rand=lambda: 0.0,  # backoff 0: a retried message is visible again at once
        slot_poll_s=0.05,
    )
    return Stack(deps, deps.actors, deps.messages, deps.configs, deps.queue, sqs, queues, settings)


def failures(response: dict[str, Any]) -> set[str]:
    """The SQS message ids a partial batch answer hands back."""
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}
