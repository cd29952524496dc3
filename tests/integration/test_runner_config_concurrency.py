"""Concurrent ``"***"`` PUTs never revert a rotation: several API processes, the moto server.

One process rotates ``authorization`` through increasing values; two others keep hammering
PUTs that keep the stored value (``"***"``) while changing another field. Each API process
resolves one request at a time (``app.handle``), so the race is between processes, as in Lambda.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from core.models import PoolKey

POOL = PoolKey(namespace="ns", runner_name="rot")
ROTATIONS = 30


def _deps(table: str) -> Any:
    import boto3

    from adapters.clock import SYSTEM_CLOCK
    from adapters.dynamodb.runner_configs import DynamoDBRunnerConfigStore
    from adapters.memory.actors import InMemoryActorStore
    from adapters.memory.messages import InMemoryMessageStore
    from adapters.memory.pool_errors import InMemoryPoolErrorStore
    from adapters.memory.probes import InMemoryProbeStore
    from adapters.settings import Settings
    from adapters.tracker import PoolErrorTracker
    from core.ports import ActorExistsError
    from functions.api.deps import ApiDeps

    actors = InMemoryActorStore(in_lambda=False)
    return ApiDeps(
        settings=Settings(),
        runner_configs=DynamoDBRunnerConfigStore(table, boto3.client("dynamodb")),
        actors=actors,
        messages=InMemoryMessageStore(actors=actors, in_lambda=False),
        queue=None,  # type: ignore[arg-type]
        tracker=PoolErrorTracker(InMemoryPoolErrorStore(in_lambda=False)),
        probes=InMemoryProbeStore(),
        check_url=lambda url, allow: None,
        actor_exists_error=ActorExistsError,
        clock=SYSTEM_CLOCK,
        sleep=time.sleep,
        new_id=lambda: "x",
    )


def _put(deps: Any, headers: dict[str, str], max_runners: int) -> int:
    from functions.api.app import handle
    from tests.helpers.apigw import aws_proxy_event

    body = {"url": "https://runner.example.com", "headers": headers, "max_runners": max_runners}
    event = aws_proxy_event("PUT", f"/runner-configs/{POOL.id}", body=body)
    return int(handle(event, None, deps)["statusCode"])


def rotate(table: str, ready: Any, start: Any, out: Any) -> None:
    """Rotate the secret; after each rotation, a read must never show an older one."""
    deps = _deps(table)
    ready.put("rotator")
    start.wait()
    backwards = []
    for i in range(1, ROTATIONS + 1):
        assert _put(deps, {"authorization": f"rot-{i:04d}", "x-team": "r"}, 10) == 200
        for _ in range(3):
            stored = deps.runner_configs.get(POOL).header_values()["authorization"]
            if int(stored.removeprefix("rot-")) < i:
                backwards.append((i, stored))
            time.sleep(0.005)
    out.put(("rotator", backwards))


def keep(table: str, ready: Any, start: Any, done: Any, out: Any) -> None:
    """PUT ``"***"`` for the secret (keep it) while changing ``max_runners``, until told."""
    deps = _deps(table)
    ready.put("keeper")
    start.wait()
    statuses: dict[int, int] = {}
    n = 0
    while n == 0 or not done.is_set():
        n += 1
        status = _put(deps, {"authorization": "***", "x-team": "k"}, 10 + n % 50)
        statuses[status] = statuses.get(status, 0) + 1
    out.put(("keeper", statuses))


def test_concurrent_keep_puts_never_revert_a_rotation(tables: dict[str, str]) -> None:
    from adapters.dynamodb.runner_configs import DynamoDBRunnerConfigStore
    from core.models import RunnerConfig

    table = tables["RunnerConfigsTable"]
    store = DynamoDBRunnerConfigStore(table)
    store.put(
        RunnerConfig(
            namespace=POOL.namespace,
            runner_name=POOL.runner_name,
            url="https://runner.example.com",
            headers={"authorization": "rot-0000"},
        )
    )
    ctx = multiprocessing.get_context("spawn")
    ready, start, done, out = ctx.Queue(), ctx.Event(), ctx.Event(), ctx.Queue()
    rotator = ctx.Process(target=rotate, args=(table, ready, start, out))
    keepers = [ctx.Process(target=keep, args=(table, ready, start, done, out)) for _ in range(2)]
    for process in (rotator, *keepers):
        process.start()
    try:
        for _ in range(3):  # every process imported and wired: start them together
            ready.get(timeout=120)
        start.set()
        results = [out.get(timeout=300)]  # the rotator ends first
        done.set()
        results += [out.get(timeout=60) for _ in keepers]
    finally:
        done.set()
        for process in (rotator, *keepers):
            process.join(timeout=60)
    by_role: dict[str, list[Any]] = {}
    for role, value in results:
        by_role.setdefault(role, []).append(value)
    assert by_role["rotator"] == [[]]  # no read ever saw an older secret
    for statuses in by_role["keeper"]:
        assert set(statuses) <= {200, 409}, statuses
        assert statuses.get(200, 0) > 0
    final = store.get(POOL)
    assert final is not None
    assert final.header_values()["authorization"] == f"rot-{ROTATIONS:04d}"
