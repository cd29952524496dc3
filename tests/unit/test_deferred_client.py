"""``DeferredClient``: no boto3 client until the first call, then one shared client."""

from __future__ import annotations

import os

from tests.helpers.proc import clean_env, run_python

SCRIPT = """
import botocore.client
creator = botocore.client.ClientCreator
real, made = creator.create_client, []
creator.create_client = lambda self, *a, **kw: made.append(self) or real(self, *a, **kw)
from adapters.aws import DeferredClient
sqs = DeferredClient("sqs", region_name="us-east-1")
print(len(made))
first, second = sqs.meta, sqs.meta
print(len(made), first is second, first.service_model.service_name)
"""


def test_client_is_made_on_first_use_and_kept() -> None:
    proc = run_python(SCRIPT, env=clean_env(AWS_CONFIG_FILE=os.devnull))
    assert proc.stdout.splitlines() == ["0", "1 True sqs"]
