"""The API on in-memory stores and the real tracker, on a fake clock: ``make_world`` and what the
API tests check its answers with."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.memory.actors import InMemoryActorStore
from adapters.memory.messages import InMemoryMessageStore
from adapters.memory.pool_errors import InMemoryPoolErrorStore
from adapters.memory.probes import InMemoryProbeStore
from adapters.memory.runner_configs import InMemoryRunnerConfigStore
from adapters.settings import Settings
from adapters.tracker import PoolErrorTracker
from core.errors import ServerlessHttpError
from core.hysteresis import PoolErrorStatus
from core.models import MessageEnvelope, PoolKey
from core.ports import ActorExistsError
from functions.api.app import handle
from functions.api.deps import ApiDeps
from functions.api.url_check import make_url_check
from tests.helpers.apigw import aws_proxy_event, response_json
from tests.helpers.clock import FakeClock

POOL = PoolKey(namespace="ns", runner_name="echo")
START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

RESOLVE = {
    "runner.example.com": ["93.184.216.34"],
    "internal.example.com": ["10.1.2.3"],
    "mixed.example.com": ["93.184.216.34", "169.254.169.254"],
}


def fake_resolver(host: str, port: int) -> list[str]:
    """DNS for the URL checks: the names of ``RESOLVE``, anything else unknown."""
    if host in RESOLVE:
        return RESOLVE[host]
    raise OSError(f"no such host {host}")


class RecordingQueue:
    """The actor-messages queue, recording what the API sends."""

    def __init__(self) -> None:
        self.sent: list[MessageEnvelope] = []
        self.dedup_ids: list[str | None] = []

    def send(self, envelope: MessageEnvelope, *, dedup_id: str | None = None) -> None:
        self.sent.append(envelope)
        self.dedup_ids.append(dedup_id)


class CountingTracker:
    """The real tracker, with its lookups counted (enrichment must batch)."""

    def __init__(self, inner: PoolErrorTracker) -> None:
        self.inner = inner
        self.batched_calls: list[list[PoolKey]] = []
        self.single_calls = 0

    def active_error(self, pool: PoolKey) -> PoolErrorStatus | None:
        self.single_calls += 1
        return self.inner.active_error(pool)

    def active_errors(self, pools: Iterable[PoolKey]) -> dict[PoolKey, PoolErrorStatus]:
        pools = list(pools)
        self.batched_calls.append(pools)
        return self.inner.active_errors(pools)

    def retire(self, pool: PoolKey) -> None:
        self.inner.retire(pool)


@dataclass
class World:
    """One API with its in-memory stores, fake clock and recording queue."""

    deps: ApiDeps
    clock: FakeClock
    tracker: PoolErrorTracker
    counting: CountingTracker
    actors: InMemoryActorStore
    messages: InMemoryMessageStore
    queue: RecordingQueue
    probes: InMemoryProbeStore
    context: Any = None
    ids: list[str] = field(default_factory=list)

    def call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        return handle(aws_proxy_event(method, path, **kw), self.context, self.deps)

    def put_config(self, name: str = "echo", **body: Any) -> dict[str, Any]:
        body.setdefault("url", "https://runner.example.com")
        return self.call("PUT", f"/runner-configs/ns/{name}", body=body)

    def create_actor(self, actor_id: str = "a1", runner_name: str = "echo") -> dict[str, Any]:
        body = {"actor_id": actor_id, "namespace": "ns", "runner_name": runner_name}
        return self.call("POST", "/actors", body=body)

    def host_finishes(self, actor_id: str, message_id: str, result: Any) -> None:
        """What the actor host does for a successful execution."""
        now = self.clock.now()
        claim = self.messages.claim(actor_id, message_id, owner="host", lease_s=60, now=now)
        assert claim.outcome == "claimed"
        self.messages.mark_running(actor_id, message_id, owner="host", runner_id="r1", now=now)
        actor = self.actors.get(actor_id)
        assert actor is not None
        self.messages.commit_success(
            actor_id,
            message_id,
            owner="host",
            expected_version=actor.state_version,
            state={"done": True},
            result=result,
            now=now,
        )


def make_world(**settings: Any) -> World:
    """A fresh ``World``; ``settings`` override the API's ``Settings``."""
    clock = FakeClock(START)
    tracker = PoolErrorTracker(InMemoryPoolErrorStore(in_lambda=False), clock=clock)
    counting = CountingTracker(tracker)
    actors = InMemoryActorStore(in_lambda=False)
    messages = InMemoryMessageStore(actors=actors, in_lambda=False)
    queue = RecordingQueue()
    probes = InMemoryProbeStore()
    counter = iter(range(1, 10_000))
    deps = ApiDeps(
        settings=Settings(**{"init_timeout_s": 1.0, **settings}),
        runner_configs=InMemoryRunnerConfigStore(in_lambda=False),
        actors=actors,
        messages=messages,
        queue=queue,
        tracker=counting,
        probes=probes,
        check_url=make_url_check(fake_resolver, allow_loopback=True),
        actor_exists_error=ActorExistsError,
        clock=clock,
        sleep=clock.sleep,
        new_id=lambda: f"id{next(counter)}",
    )
    return World(deps, clock, tracker, counting, actors, messages, queue, probes)


def assert_error(response: dict[str, Any], status: int, code: str) -> dict[str, Any]:
    """Check an error answer's status, shape and code; its body."""
    assert response["statusCode"] == status, response
    body = response_json(response)
    assert set(body) == {"group", "code", "message", "metadata"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body  # type: ignore[no-any-return]


HTTP_503 = ServerlessHttpError(status_code=503, body="upstream down")


def post_wait(w: World, **kw: Any) -> dict[str, Any]:
    """``POST /actors/a1/messages?wait=true`` (the gateway)."""
    return w.call("POST", "/actors/a1/messages", body={"input": "hi"}, query={"wait": "true"}, **kw)
