"""How many DynamoDB requests the pool error tracker sends, against the minimum.

Replays a seeded 10,000-outcome trace (several pools; long healthy stretches, error bursts,
recoveries, and an API-style ``active_errors`` poll) through the tracker on a moto server
process over HTTP, counting every request with botocore's event hooks. Time is simulated (the
tracker takes its clock as a parameter), so the 500 ms cache sees the trace's own pace.

    minimum writes = failures + successes while an error is active (replayed through observe)
    goal           = writes == minimum, reads <= 1 per pool per 500 ms per process

Baselines measured in the same run: the same tracker with no cache (TTL 0), and two processes
(two trackers sharing the table) taking turns on the trace. Exit status 1 if the goal is missed.

Then the contended case, in real time: 3 processes x 4 threads report 1,800 outcomes for ONE
pool at once (each process one tracker with the real 500 ms cache, as Lambdas would). It prints
writes against the minimum (the writes that changed the item, i.e. its final ``version``), the
share of failures that needed a second request, and how many successes reported while the
pool's error was active were dropped by the cache (checked by a read right after each skipped
success, on a client that is not counted). A replay check: the post-images' versions are exactly
1..N, each once. Goals (issue 11): writes <= 1.2x the minimum, no success dropped while active;
docs/tracker.md states what was measured. Informational: it does not change the exit status.

    python bench/tracker_writes.py [--outcomes N] [--pools N] [--seed N] [--contended N]
"""

from __future__ import annotations

import argparse
import bisect
import multiprocessing
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.dynamodb.pool_errors import DynamoDBPoolErrorStore
from adapters.tracker import PoolErrorTracker
from core.errors import (
    RunnerPoolError,
    ServerlessConnectionError,
    ServerlessHttpError,
    ServerlessStreamEndedEarly,
)
from core.hysteresis import Failure, HysteresisPolicy, Outcome, PoolState, Success, observe
from core.models import PoolKey
from infra.moto_server import MotoServer
from infra.template import create_tables

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = HysteresisPolicy()
WINDOW_S = 0.5
POLL_EVERY = 200  # outcomes between two API-style active_errors() polls


@dataclass
class TraceClock:
    """``core.ports.Clock`` at the trace's simulated time (``t`` seconds after ``T0``)."""

    t: float = 0.0

    def now(self) -> datetime:
        """``T0`` plus the simulated seconds."""
        return T0 + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        """The simulated seconds."""
        return self.t


@dataclass(frozen=True)
class Step:
    at: float  # simulated seconds since the start
    pool: PoolKey
    outcome: Outcome


def make_trace(outcomes: int, pools: int, seed: int) -> list[Step]:
    """Each pool alternates long healthy stretches with error episodes that end in recovery."""
    rng = random.Random(seed)
    keys = [PoolKey(namespace="bench", runner_name=f"pool-{i}") for i in range(pools)]
    errors: list[RunnerPoolError] = [
        ServerlessHttpError(status_code=503, body="service unavailable"),
        ServerlessConnectionError(message="connection refused", reason="connect"),
        ServerlessConnectionError(message="no init within 30 s", reason="timeout"),
        ServerlessStreamEndedEarly(),
    ]
    plans: dict[PoolKey, list[Outcome]] = {key: [] for key in keys}

    def refill(key: PoolKey) -> None:
        plan = plans[key]
        plan.extend(Success() for _ in range(rng.randint(150, 900)))  # healthy stretch
        for _ in range(rng.randint(1, 3)):  # a burst, maybe with false recoveries
            plan.extend(Failure(rng.choice(errors)) for _ in range(rng.randint(2, 40)))
            plan.extend(Success() for _ in range(rng.randint(0, 2)))
        plan.extend(Success() for _ in range(rng.randint(3, 6)))  # recovery

    weights = [rng.uniform(0.5, 3.0) for _ in keys]  # some pools are busier
    trace: list[Step] = []
    at = 0.0
    for _ in range(outcomes):
        at += rng.expovariate(1 / 0.015)  # ~67 outcomes/s across all pools
        key = rng.choices(keys, weights)[0]
        if not plans[key]:
            refill(key)
        trace.append(Step(at, key, plans[key].pop(0)))
    return trace


def minimum_writes(trace: list[Step]) -> tuple[int, int, int, dict[PoolKey, PoolState]]:
    """(failures, successes while active, successes while healthy, final states) by replay."""
    states: dict[PoolKey, PoolState] = defaultdict(PoolState)
    failures = active_successes = healthy_successes = 0
    for step in trace:
        before = states[step.pool]
        if isinstance(step.outcome, Failure):
            failures += 1
        elif before.healthy:
            healthy_successes += 1
        else:
            active_successes += 1
        states[step.pool] = observe(
            before, step.outcome, now=T0 + timedelta(seconds=step.at), policy=POLICY
        )
    return failures, active_successes, healthy_successes, dict(states)


@dataclass
class Requests:
    """Every DynamoDB request of one client, by operation, with read times per pool."""

    clock: TraceClock
    calls: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0
    reads_at: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def attach(self, client: Any) -> None:
        # before-send: once per HTTP request (botocore retries included).
        client.meta.events.register("before-send.dynamodb.*", self._send)
        client.meta.events.register("before-parameter-build.dynamodb.*", self._params)
        client.meta.events.register("after-call.dynamodb.UpdateItem", self._after_update)

    def _send(self, event_name: str, **_: Any) -> None:
        self.calls[event_name.rsplit(".", 1)[-1]] += 1

    def _params(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name == "GetItem":
            self.reads_at[params["Key"]["pool_id"]["S"]].append(self.clock.t)
        elif model.name == "BatchGetItem":
            for request in params["RequestItems"].values():
                for key in request["Keys"]:
                    self.reads_at[key["pool_id"]["S"]].append(self.clock.t)

    def _after_update(self, parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            self.conflicts += 1

    @property
    def writes(self) -> int:
        return self.calls["UpdateItem"]

    @property
    def reads(self) -> int:
        return self.calls["GetItem"] + self.calls["BatchGetItem"]

    def max_reads_per_window(self) -> int:
        """The most reads of one pool within any WINDOW_S of simulated time."""
        worst = 0
        for times in self.reads_at.values():
            times.sort()
            for i, t in enumerate(times):
                worst = max(worst, bisect.bisect_left(times, t + WINDOW_S) - i)
        return worst


def client_for(url: str) -> Any:
    """A DynamoDB client of the moto server at ``url`` (one per thread: boto3 clients are made
    from a session that is not thread-safe)."""
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # moto's dummy credentials
    )


@dataclass
class RunResult:
    name: str
    requests: list[Requests]
    seconds: float
    final: dict[PoolKey, PoolState]


def run(
    name: str, server: MotoServer, trace: list[Step], *, processes: int, cache_ttl_s: float
) -> RunResult:
    """Replay ``trace``; outcome i goes to process ``i % processes`` (each its own client)."""
    table = f"bench-{name.replace(' ', '-')}-{time.monotonic_ns()}"
    create_tables(client_for(server.url), {"PoolErrorsTable": table})
    clock = TraceClock()  # shared by every tracker of this run
    trackers: list[PoolErrorTracker] = []
    counters: list[Requests] = []
    for _ in range(processes):
        client = client_for(server.url)
        requests = Requests(clock)
        requests.attach(client)
        counters.append(requests)
        trackers.append(
            PoolErrorTracker(
                DynamoDBPoolErrorStore(table, client=client),
                policy=POLICY,
                cache_ttl_s=cache_ttl_s,
                clock=clock,
            )
        )
    pools = sorted({step.pool for step in trace}, key=lambda p: p.id)
    started = time.perf_counter()
    for i, step in enumerate(trace):
        clock.t = step.at
        trackers[i % processes].report(step.pool, step.outcome)
        if i % POLL_EVERY == POLL_EVERY - 1:
            trackers[0].active_errors(pools)
    seconds = time.perf_counter() - started
    final = DynamoDBPoolErrorStore(table, client=client_for(server.url)).get_many(pools)
    return RunResult(name, counters, seconds, final)


# --- the contended case: 3 processes x 4 threads, one pool, real time -------------------------

CONTENDED_POOL = PoolKey(namespace="bench", runner_name="contended")


def contended_plan(count: int, rng: random.Random) -> list[Outcome]:
    """One thread's outcomes: healthy stretches and error bursts with false recoveries."""
    errors: list[RunnerPoolError] = [
        ServerlessHttpError(status_code=503, body="service unavailable"),
        ServerlessConnectionError(message="connection refused", reason="connect"),
    ]
    plan: list[Outcome] = []
    while len(plan) < count:
        plan.extend(Success() for _ in range(rng.randint(5, 30)))
        for _ in range(rng.randint(1, 3)):
            plan.extend(Failure(rng.choice(errors)) for _ in range(rng.randint(1, 6)))
            plan.extend(Success() for _ in range(rng.randint(0, 4)))
    return plan[:count]


def contended_worker(args: tuple[str, str, int, int, int, float]) -> dict[str, Any]:
    """One "Lambda" process: one tracker (500 ms cache) shared by ``threads`` threads."""
    url, table, seed, outcomes, threads, pace_s = args
    counted = client_for(url)
    sent: Counter[str] = Counter()
    versions: list[int] = []
    lock = threading.Lock()

    def on_send(event_name: str, **_: Any) -> None:
        with lock:
            sent[event_name.rsplit(".", 1)[-1]] += 1

    calls = threading.local()
    tally: Counter[str] = Counter()

    def on_update(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            calls.conflicts = getattr(calls, "conflicts", 0) + 1
            with lock:
                tally[f"{getattr(calls, 'kind', '?')}_not_applied"] += 1
            return
        version = parsed.get("Attributes", {}).get("version", {}).get("N")
        if version is not None:
            with lock:
                versions.append(int(version))

    counted.meta.events.register("before-send.dynamodb.*", on_send)
    counted.meta.events.register("after-call.dynamodb.UpdateItem", on_update)
    store = DynamoDBPoolErrorStore(table, client=counted)
    checker = DynamoDBPoolErrorStore(table, client=client_for(url))  # not counted
    tracker = PoolErrorTracker(store, policy=POLICY, cache_ttl_s=0.5)
    original_apply = store.apply

    def apply(pool: PoolKey, outcome: Outcome, **kw: Any) -> Any:
        calls.applied = True
        calls.kind = "failure" if isinstance(outcome, Failure) else "success"
        calls.conflicts = 0
        result = original_apply(pool, outcome, **kw)
        if calls.kind == "failure" and calls.conflicts:
            with lock:
                tally["failures_retried"] += 1
        return result

    store.apply = apply  # type: ignore[method-assign]

    def run_thread(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        for outcome in contended_plan(outcomes // threads, rng):
            if isinstance(outcome, Failure):
                tracker.report_error(CONTENDED_POOL, outcome.error)
                with lock:
                    tally["failures"] += 1
            else:
                calls.applied = False
                tracker.report_success(CONTENDED_POOL)
                if not calls.applied and not checker.get(CONTENDED_POOL).healthy:
                    with lock:
                        tally["dropped"] += 1  # the cache said healthy; the item was not
            time.sleep(rng.uniform(0, 2 * pace_s))

    workers = [threading.Thread(target=run_thread, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"sent": dict(sent), "versions": versions, "tally": dict(tally)}


def run_contended(
    server: MotoServer, *, outcomes: int, processes: int = 3, threads: int = 4, seed: int = 1
) -> dict[str, Any]:
    table = f"bench-contended-{time.monotonic_ns()}"
    create_tables(client_for(server.url), {"PoolErrorsTable": table})
    per_process = outcomes // processes
    jobs = [(server.url, table, seed + p, per_process, threads, 0.004) for p in range(processes)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(contended_worker, jobs)
    seconds = time.perf_counter() - started
    final = DynamoDBPoolErrorStore(table, client=client_for(server.url)).get(CONTENDED_POOL)
    writes = sum(r["sent"].get("UpdateItem", 0) for r in results)
    versions = sorted(v for r in results for v in r["versions"])

    def total(key: str) -> int:
        return sum(int(r["tally"].get(key, 0)) for r in results)

    failures = total("failures")
    return {
        "outcomes": per_process * processes,
        "seconds": seconds,
        "writes": writes,
        "minimum": final.version,
        "failures": failures,
        "failures_retried": total("failures_retried"),
        "failure_requests_not_applied": total("failure_not_applied"),
        "success_requests_not_applied": total("success_not_applied"),
        "counted_active_successes": final.version - failures,
        "dropped_active_successes": total("dropped"),
        "reads": sum(r["sent"].get("GetItem", 0) for r in results),
        "replay_ok": versions == list(range(1, final.version + 1)),
    }


def print_contended(c: dict[str, Any]) -> None:
    active = c["counted_active_successes"] + c["dropped_active_successes"]
    print(
        f"contended: {c['outcomes']} outcomes for one pool from 3 processes x 4 threads "
        f"({c['seconds']:.1f} s); {c['failures']} failures"
    )
    print(
        f"  writes {c['writes']} vs minimum {c['minimum']} (the writes that changed the item): "
        f"{c['writes'] / max(c['minimum'], 1):.3f}x; reads {c['reads']}"
    )
    print(
        f"  failures that needed a second request: {c['failures_retried']} of {c['failures']} "
        f"({c['failures_retried'] / max(c['failures'], 1):.0%}); failure requests not applied "
        f"{c['failure_requests_not_applied']}, success requests that found the pool healthy "
        f"{c['success_requests_not_applied']}"
    )
    print(
        f"  successes while the error was active: {c['counted_active_successes']} counted, "
        f"{c['dropped_active_successes']} dropped by the 500 ms cache "
        f"({c['dropped_active_successes'] / max(active, 1):.0%})"
    )
    print(f"  replay check (post-image versions 1..N, each once): {c['replay_ok']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outcomes", type=int, default=10_000)
    parser.add_argument("--pools", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--contended", type=int, default=1_800, help="0 skips that case")
    args = parser.parse_args(argv)

    trace = make_trace(args.outcomes, args.pools, args.seed)
    failures, active_ok, healthy_ok, replayed = minimum_writes(trace)
    minimum = failures + active_ok
    span = trace[-1].at
    read_budget = args.pools * (int(span / WINDOW_S) + 1)
    print(
        f"trace: {len(trace)} outcomes, {args.pools} pools, {span:.0f} s simulated, seed "
        f"{args.seed}; {failures} failures, {active_ok} successes while active, {healthy_ok} "
        f"while healthy; active_errors() poll every {POLL_EVERY} outcomes"
    )
    print(f"minimum writes: {minimum} ({minimum / len(trace):.4f} per outcome)")
    print(f"read budget (1 per pool per {WINDOW_S * 1000:.0f} ms): {read_budget}")
    print()

    with MotoServer() as server:
        results = [
            run("tracker 1 process", server, trace, processes=1, cache_ttl_s=0.5),
            run("no cache (ttl 0)", server, trace, processes=1, cache_ttl_s=0.0),
            run("tracker 2 processes", server, trace, processes=2, cache_ttl_s=0.5),
        ]
        contended = run_contended(server, outcomes=args.contended) if args.contended else None

    header = (
        f"{'run':<22}{'writes':>8}{'w/min':>8}{'conflicts':>10}{'reads':>8}{'r/outcome':>10}"
        f"{'max r/pool/500ms':>18}{'req/outcome':>12}{'ms/outcome':>11}  final == replay"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for result in results:
        writes = sum(r.writes for r in result.requests)
        reads = sum(r.reads for r in result.requests)
        conflicts = sum(r.conflicts for r in result.requests)
        window = max(r.max_reads_per_window() for r in result.requests)
        same = result.final == {pool: replayed.get(pool, PoolState()) for pool in result.final}
        print(
            f"{result.name:<22}{writes:>8}{writes / minimum:>8.3f}{conflicts:>10}{reads:>8}"
            f"{reads / len(trace):>10.4f}{window:>18}{(writes + reads) / len(trace):>12.4f}"
            f"{result.seconds * 1000 / len(trace):>11.2f}  {same}"
        )
        if result.name == "tracker 1 process":
            ok = writes == minimum and window <= 1 and same
    print()
    print(
        f"minimum: {minimum / len(trace):.4f} writes per outcome; goal "
        f"{'MET' if ok else 'MISSED'} for one process (writes == minimum, "
        f"<= 1 read per pool per {WINDOW_S * 1000:.0f} ms, final state == replay)"
    )
    if contended is not None:
        print()
        print_contended(contended)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
