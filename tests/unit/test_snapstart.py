"""SnapStart hooks: each handler registers them at import; warm builds deps(), restore drops it.

Runs each handler in a fresh interpreter with a stand-in ``snapshot_restore_py`` (the module the
Lambda Python runtime provides) that records the hooks, then calls them as Lambda would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.proc import ROOT, clean_env, run_python

FAKE_RUNTIME = """
before, after = [], []
def register_before_snapshot(fn):
    before.append(fn)
def register_after_restore(fn):
    after.append(fn)
"""

SCRIPT = """
import importlib, json, random, sys
import snapshot_restore_py as runtime
app = importlib.import_module(sys.argv[1])
out = {"before": len(runtime.before), "after": len(runtime.after)}
out["built_at_import"] = app.deps.cache_info().currsize
for hook in runtime.before:
    hook()
first = app.deps()
out["powertools_before_snapshot"] = "aws_lambda_powertools.metrics" in sys.modules
out["built_before_snapshot"] = app.deps.cache_info().currsize
random.seed(7)  # the state every copy of the snapshot would share
for hook in runtime.after:
    hook()
out["dropped_after_restore"] = app.deps.cache_info().currsize == 0
drawn = random.random()
random.seed(7)
out["reseeded"] = drawn != random.random()
second = app.deps()
out["new_deps_after_restore"] = second is not first
from adapters import observability
out["cold_again"] = observability._cold_start
print(json.dumps(out))
"""


# Static credentials and no config files; building clients calls nothing, and a dead loopback
# endpoint makes sure of it.
OFFLINE_AWS = {
    "AWS_ACCESS_KEY_ID": "snap",
    "AWS_SECRET_ACCESS_KEY": "snap",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@pytest.mark.parametrize("name", ["actor_host", "api", "pool_manager"])
def test_hooks_warm_before_the_snapshot_and_rebuild_after_restore(
    name: str, tmp_path: Path
) -> None:
    (tmp_path / "snapshot_restore_py.py").write_text(FAKE_RUNTIME)
    pythonpath = os.pathsep.join([str(tmp_path), str(ROOT)])
    proc = run_python(
        SCRIPT, f"functions.{name}.app", env=clean_env(**OFFLINE_AWS, PYTHONPATH=pythonpath)
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "before": 1,
        "after": 1,
        "built_at_import": 0,
        "powertools_before_snapshot": True,
        "built_before_snapshot": 1,
        "dropped_after_restore": True,
        "reseeded": True,
        "new_deps_after_restore": True,
        "cold_again": True,
    }


def test_without_the_runtime_module_nothing_is_registered() -> None:
    from adapters import snapstart

    assert snapstart.register(warm=lambda: None, reset=lambda: None) is False
