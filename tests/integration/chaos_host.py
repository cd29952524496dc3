"""An actor host in its own process, for the chaos test: the event source mapping's loop
(ReceiveMessage -> ``functions.actor_host.app.handle`` -> delete what succeeded) on a few
threads, configured from the environment like the Lambda (``Settings``), until it is killed.

One message per receive: when several messages of one group were in flight and come back after
a visibility timeout (a killed host), moto's FIFO emulation delivers the group's *last* one
first and then keeps the earlier ones behind it for as long as it keeps being handed back
(real SQS delivers the earliest). The host's order guard refuses such a later message (tested
on its own in test_actor_host_limits.py); with one in-flight message per group moto keeps
SQS's order and the chaos run ends. Receives are also serialized across the threads: moto
answers concurrent ReceiveMessage calls from one snapshot of the in-flight groups, so two
threads could get two messages of one group at once (SQS never hands out a group's next
message while one is in flight).

``python -m tests.integration.chaos_host`` (the test SIGKILLs it mid-execution).
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading

import boto3

from adapters.settings import get_settings
from functions.actor_host.app import build_deps, handle
from infra.local.host_loop import failed_ids, sqs_event
from tests.fixtures.sqs_events import FakeLambdaContext

POLLERS = 3
TIMEOUT_MS = 60_000
RECEIVE_LOCK = threading.Lock()


def poll_forever() -> None:
    settings = get_settings()
    dynamodb = boto3.client("dynamodb")
    sqs = boto3.client("sqs")
    deps = build_deps(settings, dynamodb=dynamodb, sqs=sqs, slot_poll_s=0.05)
    url = settings.actor_messages_queue_url
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    while True:
        with RECEIVE_LOCK:
            got = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        messages = got.get("Messages", [])
        if not messages:
            continue
        event = sqs_event(messages, arn)
        try:
            response = handle(event, FakeLambdaContext(TIMEOUT_MS), deps)
        except Exception as exc:  # the whole batch comes back, as with Lambda
            print(f"chaos host: batch raised {exc!r}", file=sys.stderr, flush=True)
            continue
        keep = failed_ids(response, event["Records"])
        for m in messages:  # one line per record: what a failure report starts from
            kept = "kept" if m["MessageId"] in keep else "done"
            count = m.get("Attributes", {}).get("ApproximateReceiveCount")
            print(f"chaos host: {m['Body']} receive {count}: {kept}", flush=True)
        done = [m for m in messages if m["MessageId"] not in keep]
        if done:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )


def main() -> None:
    # ``kill -USR1`` dumps every thread's stack to stderr (the test does on a stall).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    threads = [threading.Thread(target=poll_forever, daemon=True) for _ in range(POLLERS)]
    for thread in threads:
        thread.start()
    print("chaos host: polling", flush=True)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
