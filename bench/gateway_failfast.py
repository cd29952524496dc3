"""How fast the gateway answers ``actor_runner_failed`` when the actor's pool is already broken.

A moto server holds the template's tables and queues; the pool has an active error in the real
tracker table; each request is ``POST /actors/{id}/messages?wait=true`` as a SAM-shaped REST
proxy event into ``functions.api.app.lambda_handler`` (real DynamoDB stores, SQS, tracker, with
the default ``gateway_first_check_s`` = 1 s). Interleaved with each gateway request we time the
same POST without ``wait`` (the baseline: enqueue cost, measured in the same run), so:

    fail-fast time ~= gateway_first_check_s + one tracker read
    overhead       = median(fail-fast) - gateway_first_check_s

Goal (issue 6): median fail-fast time <= 1.2 s with the default 1 s delay. ``--strict`` exits 1
when it is missed.

    .venv/bin/python bench/gateway_failfast.py [--runs 15] [--strict] [--json]
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

from infra.moto_server import MotoServer  # noqa: E402
from infra.template import (  # noqa: E402
    create_queues,
    create_tables,
    function_specs,
    queue_specs,
    table_specs,
)

GOAL_S: Final = 1.2


def _event(method: str, path: str, body: Any, query: dict[str, str] | None = None) -> Any:
    """A REST proxy event as the deployed API (and ``runner-kit local``) sends it."""
    from urllib.parse import urlencode

    from infra.local.http import api_gateway_event

    raw_path = f"{path}?{urlencode(query)}" if query else path
    headers = {"content-type": "application/json"}
    return api_gateway_event(method, raw_path, headers, json.dumps(body).encode())


def measure(runs: int) -> dict[str, Any]:
    """Start the stack, break the pool, time ``runs`` gateway and baseline requests."""
    import boto3

    server = MotoServer().start()
    try:
        os.environ.update(server.environ())
        dynamodb = boto3.client("dynamodb", endpoint_url=server.url, region_name="us-east-1")
        sqs = boto3.client("sqs", endpoint_url=server.url, region_name="us-east-1")
        suffix = uuid.uuid4().hex[:8]
        tables = {lid: f"bench-{lid}-{suffix}" for lid in table_specs()}
        create_tables(dynamodb, tables)
        queues = create_queues(sqs, {lid: f"bench-{lid}-{suffix}" for lid in queue_specs()})
        # The API's table names and queue URLs, as the template's !Ref variables name them.
        os.environ.update(function_specs()["ApiFunction"].resource_environ({**tables, **queues}))
        os.environ.pop("AWS_LAMBDA_FUNCTION_NAME", None)

        from adapters.settings import get_settings
        from adapters.tracker import build_tracker
        from core.errors import ServerlessHttpError
        from core.models import PoolKey
        from functions.api.app import deps, lambda_handler

        get_settings.cache_clear()
        deps.cache_clear()
        settings = get_settings()

        def call(method: str, path: str, body: Any, query: dict[str, str] | None = None) -> Any:
            return lambda_handler(_event(method, path, body, query), None)

        assert (
            call("PUT", "/runner-configs/ns/echo", {"url": "https://93.184.216.34"})["statusCode"]
            == 200
        )
        actor = {"actor_id": "bench", "namespace": "ns", "runner_name": "echo"}
        assert call("POST", "/actors", actor)["statusCode"] == 201
        build_tracker(settings).report_error(
            PoolKey(namespace="ns", runner_name="echo"),
            ServerlessHttpError(status_code=503, body="bench"),
        )
        call("POST", "/actors/bench/messages", {"input": 0})  # warm clients and caches

        failfast: list[float] = []
        baseline: list[float] = []
        for i in range(runs):
            t0 = time.perf_counter()
            answer = call("POST", "/actors/bench/messages", {"input": i}, {"wait": "true"})
            failfast.append(time.perf_counter() - t0)
            code = json.loads(answer["body"]).get("code")
            if answer["statusCode"] != 503 or code != "actor_runner_failed":
                raise RuntimeError(f"expected actor_runner_failed, got {answer}")
            t0 = time.perf_counter()
            assert call("POST", "/actors/bench/messages", {"input": i})["statusCode"] == 202
            baseline.append(time.perf_counter() - t0)
        median = statistics.median(failfast)
        return {
            "runs": runs,
            "first_check_s": settings.gateway_first_check_s,
            "failfast_median_s": round(median, 4),
            "failfast_min_s": round(min(failfast), 4),
            "failfast_max_s": round(max(failfast), 4),
            "baseline_median_s": round(statistics.median(baseline), 4),
            "overhead_s": round(median - settings.gateway_first_check_s, 4),
            "ratio_to_first_check": round(median / settings.gateway_first_check_s, 3),
            "goal_s": GOAL_S,
            "met": median <= GOAL_S,
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--strict", action="store_true", help="exit 1 if the goal is missed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    opts = parser.parse_args(argv)
    # The handlers print EMF lines to stdout, as in Lambda; keep them off the figures.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # and their JSON log lines
    out = measure(opts.runs)
    if opts.json:
        print(json.dumps(out))
    else:
        print(
            f"gateway fail-fast, {out['runs']} runs, first check after {out['first_check_s']} s\n"
            f"  actor_runner_failed  median {out['failfast_median_s']:.3f} s  "
            f"(min {out['failfast_min_s']:.3f}, max {out['failfast_max_s']:.3f})\n"
            f"  baseline POST (no wait) median {out['baseline_median_s']:.3f} s\n"
            f"  overhead over the 1st check {out['overhead_s']:.3f} s; "
            f"ratio to the delay {out['ratio_to_first_check']:.3f}\n"
            f"  goal <= {GOAL_S} s: {'met' if out['met'] else 'MISSED'}"
        )
    return 1 if opts.strict and not out["met"] else 0


if __name__ == "__main__":
    sys.exit(main())
