"""Every function logs JSON through Powertools, also under Lambda's root logger at WARNING.

Each handler runs in a fresh interpreter whose root logger is set up the way the Lambda Python
runtime leaves it (one handler, level WARNING), with in-memory dependencies, and must print its
INFO ``invocation summary`` as one JSON line with the Lambda context injected.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers.proc import clean_env, run_python

PRELUDE = """
import logging, sys
# What the Lambda runtime does: a text handler on the root logger, level WARNING.
root = logging.getLogger()
root.handlers = [logging.StreamHandler(sys.stderr)]
root.setLevel(logging.WARNING)
from tests.fixtures.sqs_events import FakeLambdaContext
context = FakeLambdaContext()
"""

SCRIPTS = {
    "api": """
import functions.api.app as app
from tests.helpers.api import make_world
from tests.helpers.apigw import aws_proxy_event
world = make_world()
app.deps = lambda: world.deps
print("ANSWER", app.lambda_handler(aws_proxy_event("GET", "/actors/a1"), context)["statusCode"])
""",
    "pool_manager": """
import random
import functions.pool_manager.app as app
from adapters.clock import SYSTEM_CLOCK
from adapters.memory.actors import InMemoryActorStore
from adapters.memory.messages import InMemoryMessageStore
from adapters.memory.pool_errors import InMemoryPoolErrorStore
from adapters.memory.probes import InMemoryProbeStore
from adapters.memory.runner_configs import InMemoryRunnerConfigStore
from adapters.settings import Settings
from adapters.tracker import PoolErrorTracker
from functions.pool_manager.manager import PoolManagerDeps
actors = InMemoryActorStore(in_lambda=False)
deps = PoolManagerDeps(
    settings=Settings(),
    runner_configs=InMemoryRunnerConfigStore(in_lambda=False),
    tracker=PoolErrorTracker(InMemoryPoolErrorStore(in_lambda=False)),
    probes=InMemoryProbeStore(),
    actors=actors,
    messages=InMemoryMessageStore(actors=actors, in_lambda=False),
    probe=lambda config, deadline: None,
    clock=SYSTEM_CLOCK,
    rand=random.random,
)
app.deps = lambda: deps
print("ANSWER", app.lambda_handler({}, context)["pools"])
""",
    "actor_host": """
import functions.actor_host.app as app
from tests.helpers.host import Env
env = Env()
app.deps = lambda: env.deps
print("ANSWER", app.lambda_handler({"Records": []}, context))
""",
}


def run_handler(name: str, **env: str) -> tuple[list[dict[str, Any]], str]:
    clean = clean_env(("AWS_", "POWERTOOLS_"), AWS_DEFAULT_REGION="us-east-1", **env)
    proc = run_python(PRELUDE + SCRIPTS[name], env=clean)
    assert "ANSWER" in proc.stdout, proc.stdout
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return lines, proc.stderr


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_handler_logs_its_invocation_summary_as_json_under_a_warning_root(name: str) -> None:
    lines, stderr = run_handler(name)
    summaries = [x for x in lines if x.get("message") == "invocation summary"]
    assert len(summaries) == 1, lines
    summary = summaries[0]
    assert summary["level"] == "INFO"
    assert summary["service"] == name
    assert summary["function"] == name
    assert summary["status"] == "ok"
    assert isinstance(summary["summary"], dict)
    # The Lambda context is injected into every line.
    assert summary["function_name"] == "runner-kit-test-actor-host"
    assert summary["function_request_id"]
    assert summary["cold_start"] is True
    assert "invocation summary" not in stderr  # not (also) through the runtime's text handler


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_log_level_parameter_silences_info(name: str) -> None:
    lines, _ = run_handler(name, POWERTOOLS_LOG_LEVEL="WARNING")
    assert [x for x in lines if x.get("message") == "invocation summary"] == []


def test_cold_start_metric_on_the_first_invocation() -> None:
    lines, _ = run_handler("pool_manager")
    emf = [x for x in lines if "_aws" in x]
    assert any("ColdStart" in x and x.get("service") == "pool_manager" for x in emf), emf
    assert any(x.get("ActivePoolErrors") == [0.0] for x in emf), emf


def test_api_lines_carry_the_actor_key() -> None:
    lines, _ = run_handler("api")
    summary = next(x for x in lines if x.get("message") == "invocation summary")
    assert summary["actor_id"] == "a1"
    assert summary["summary"]["status_code"] == 404
    assert summary["summary"]["code"] == "actor_not_found"


def test_the_kit_stdlib_loggers_come_out_as_json_too() -> None:
    script = (
        PRELUDE
        + """
import logging
from adapters import observability
observability.get_logger("pool_manager")
logging.getLogger("functions.pool_manager.manager").info("step", extra={"pool": "ns/a"})
logging.getLogger("runner_kit.sse").debug("not at INFO")
logging.getLogger("elsewhere").info("not the kit's: left to the root logger")
print("ANSWER")
"""
    )
    proc = run_python(script, env=clean_env(("AWS_", "POWERTOOLS_")))
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [(x["message"], x["pool"], x["service"], x["level"]) for x in lines] == [
        ("step", "ns/a", "pool_manager", "INFO")
    ]
    assert "not the kit's" not in proc.stdout + proc.stderr  # root stays at WARNING
