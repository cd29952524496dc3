"""Batch concurrency of actor_host: 10 messages for 10 different actors, a runner taking 300 ms.

Everything is real and local: a moto server (DynamoDB + SQS over HTTP, tables and queues from
``template.yaml``), the dev runner endpoint on 127.0.0.1 (``/delay/300``: 300 ms between ``init``
and ``done``), the real stores, tracker and SSE client, and ``functions.actor_host.app.handle``.

Baseline, measured in the same run: the wall time of a batch of ONE message (one execution,
same path: queue receive excluded, handler only). Then a batch of 10 messages of 10 actors (so
they are independent and may run concurrently). Runs are interleaved and we print medians and
the ratio ``batch / single``. Goal: <= 1.3x.

``--stores memory`` runs the same host, SSE client and dev runner with the in-memory stores
instead of DynamoDB on moto: it separates the host's own concurrency from the cost of the local
DynamoDB emulator (one Python process that every store call goes through). ``--stores both``
(the default) prints both.

    .venv/bin/python bench/actor_batch.py [--runs 7] [--stores both|dynamodb|memory] [--strict]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

GOAL: Final = 1.3
RUNNER_MS: Final = 300
BATCH: Final = 10


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--stores", choices=["both", "dynamodb", "memory"], default="both")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the goal is missed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    # The handlers print EMF lines to stdout, as in Lambda; keep them off the figures.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # and their JSON log lines

    from infra.dev_runner import DevRunner

    kinds = ["dynamodb", "memory"] if args.stores == "both" else [args.stores]
    results = []
    with DevRunner() as dev:
        for kind in kinds:
            if kind == "memory":
                results.append(_measure("memory", _Bench.in_memory(dev.delay_url(RUNNER_MS)), args))
            else:
                results.append(_measure_dynamodb(dev.delay_url(RUNNER_MS), args))
    missed = False
    for result in results:
        missed = missed or not result["met"]
        if args.json:
            print(json.dumps(result))
            continue
        print(
            f"actor_host batch of {BATCH} actors, runner {RUNNER_MS} ms, "
            f"stores={result['stores']}, {args.runs} runs (interleaved)"
        )
        print(f"  one execution (batch of 1): median {result['single_median_s'] * 1000:7.1f} ms")
        print(f"  batch of {BATCH}:               median {result['batch_median_s'] * 1000:7.1f} ms")
        verdict = "met" if result["met"] else "MISSED"
        print(f"  ratio batch/single: {result['ratio']:.2f}x (goal <= {GOAL}x: {verdict})")
    return 1 if args.strict and missed else 0


def _measure_dynamodb(url: str, args: argparse.Namespace) -> dict[str, Any]:
    import boto3

    from infra.moto_server import MotoServer
    from infra.template import create_queues, create_tables, queue_specs, table_specs

    with MotoServer() as moto:
        os.environ.update(moto.environ())
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        suffix = uuid.uuid4().hex[:8]
        tables = {lid: f"bench-{lid}-{suffix}" for lid in table_specs()}
        create_tables(dynamodb, tables)
        queues = create_queues(sqs, {lid: f"bench-{lid}-{suffix}" for lid in queue_specs()})
        return _measure("dynamodb", _Bench.dynamodb(tables, queues, dynamodb, sqs, url), args)


def _measure(kind: str, bench: _Bench, args: argparse.Namespace) -> dict[str, Any]:
    bench.run(1)  # warm up: connections, caches, imports
    bench.run(BATCH)
    singles: list[float] = []
    batches: list[float] = []
    for _ in range(args.runs):
        singles.append(bench.run(1))
        batches.append(bench.run(BATCH))
    single = statistics.median(singles)
    batch = statistics.median(batches)
    ratio = batch / single
    return {
        "stores": kind,
        "runner_ms": RUNNER_MS,
        "batch_size": BATCH,
        "runs": args.runs,
        "single_median_s": round(single, 4),
        "batch_median_s": round(batch, 4),
        "single_all_s": [round(v, 4) for v in singles],
        "batch_all_s": [round(v, 4) for v in batches],
        "ratio": round(ratio, 3),
        "goal": GOAL,
        "met": ratio <= GOAL,
    }


class _Bench:
    """One stack; ``run(n)`` times ``handle`` on a batch of ``n`` fresh actors' messages."""

    def __init__(self, deps: Any) -> None:
        self.deps = deps
        self.actors = deps.actors
        self.messages = deps.messages

    @staticmethod
    def _config(url: str) -> Any:
        from core.models import RunnerConfig

        return RunnerConfig(
            namespace="bench",
            runner_name="slow",
            url=url,
            max_runners=BATCH,
            allow_private_network=True,
        )

    @classmethod
    def dynamodb(
        cls, tables: dict[str, str], queues: dict[str, str], dynamodb: Any, sqs: Any, url: str
    ) -> _Bench:
        from adapters.settings import Settings
        from functions.actor_host.app import build_deps, get_logger

        settings = Settings(
            actors_table=tables["ActorsTable"],
            messages_table=tables["MessagesTable"],
            runner_configs_table=tables["RunnerConfigsTable"],
            slots_table=tables["SlotsTable"],
            pool_errors_table=tables["PoolErrorsTable"],
            actor_messages_queue_url=queues["ActorMessagesQueue"],
            actor_messages_dlq_url=queues["ActorMessagesDLQ"],
        )
        get_logger().setLevel("WARNING")  # one INFO line per batch would be noise here
        deps = build_deps(settings, dynamodb=dynamodb, sqs=sqs)  # the Lambda's own wiring
        deps.configs.put(cls._config(url))
        return cls(deps)

    @classmethod
    def in_memory(cls, url: str) -> _Bench:
        from adapters.clock import SYSTEM_CLOCK
        from adapters.memory.actors import InMemoryActorStore
        from adapters.memory.messages import InMemoryMessageStore
        from adapters.memory.pool_errors import InMemoryPoolErrorStore
        from adapters.memory.runner_configs import InMemoryRunnerConfigStore
        from adapters.memory.slots import InMemorySlotStore
        from adapters.runner.attempt import StartLimits
        from adapters.runner.client import AsyncRunnerClient
        from adapters.runner.transport import StartTarget
        from adapters.settings import Settings
        from adapters.sqs import SqsReplies
        from adapters.tracker import build_tracker
        from functions.actor_host.app import get_logger
        from functions.actor_host.deps import HostDeps

        settings = Settings()
        actors = InMemoryActorStore(in_lambda=False)
        slots = InMemorySlotStore(in_lambda=False)
        configs = InMemoryRunnerConfigStore(in_lambda=False)
        configs.put(cls._config(url))
        get_logger().setLevel("WARNING")
        return cls(
            HostDeps(
                settings=settings,
                actors=actors,
                messages=InMemoryMessageStore(actors=actors, slots=slots, in_lambda=False),
                configs=configs,
                slots=slots,
                tracker=build_tracker(settings, store=InMemoryPoolErrorStore(in_lambda=False)),
                runner=lambda: AsyncRunnerClient(StartLimits.from_settings(settings)),
                target_for=StartTarget.from_config,
                queue=None,
                dlq=None,
                replies=SqsReplies(),
                logger=get_logger(),
                clock=SYSTEM_CLOCK,
            )
        )

    def run(self, n: int) -> float:
        from fixtures.sqs_events import (  # type: ignore[import-not-found]
            FakeLambdaContext,
            envelope_body,
            sqs_event,
            sqs_record,
        )

        from core.models import ActorRecord, MessageRecord
        from functions.actor_host.app import handle

        records = []
        for _ in range(n):
            actor_id = f"a-{uuid.uuid4().hex[:12]}"
            message_id = uuid.uuid4().hex
            self.actors.create(
                ActorRecord(actor_id=actor_id, namespace="bench", runner_name="slow")
            )
            self.messages.create(MessageRecord(actor_id=actor_id, message_id=message_id, input=1))
            records.append(sqs_record(envelope_body(actor_id, message_id), group_id=actor_id))
        event = sqs_event(*records)
        start = time.perf_counter()
        response = handle(event, FakeLambdaContext(900_000), self.deps)
        elapsed = time.perf_counter() - start
        if response["batchItemFailures"]:
            raise RuntimeError(f"benchmark batch had failures: {response}")
        return elapsed


if __name__ == "__main__":
    sys.exit(main())
