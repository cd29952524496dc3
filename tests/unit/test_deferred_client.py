"""``DeferredClient``: no boto3 client until the first call, then one shared client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import botocore.client
made = []
_create = botocore.client.ClientCreator.create_client
def create(self, service_name, *args, **kwargs):
    made.append(service_name)
    return _create(self, service_name, *args, **kwargs)
botocore.client.ClientCreator.create_client = create
from adapters.aws import DeferredClient
sqs = DeferredClient("sqs", region_name="us-east-1")
print(made)
first = sqs.meta
second = sqs.meta
print(made, first is second, first.service_model.service_name)
"""


def test_client_is_made_on_first_use_and_kept() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PYTHONPATH=str(ROOT), AWS_CONFIG_FILE=os.devnull)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[]", "['sqs'] True sqs"]
