"""``DeferredClient``: no boto3 client until the first call, then one shared client."""

from __future__ import annotations

import os

from tests.helpers.proc import clean_env, run_python

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
    proc = run_python(SCRIPT, env=clean_env(AWS_CONFIG_FILE=os.devnull))
    assert proc.stdout.splitlines() == ["[]", "['sqs'] True sqs"]
