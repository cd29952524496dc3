"""The SQS event source mapping of the actor host: receive a batch, invoke, delete what succeeded.

As Lambda's does: the template's batch size, the queue's own visibility timeout and redrive
policy, partial batch failures (only the ids in ``batchItemFailures`` stay in the queue; a raised
error keeps the whole batch).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.local.lambda_runtime import ACCOUNT_ID, REGION
from infra.template import FunctionSpec


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping sends for ``messages`` (ReceiveMessage)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    name: {
                        "stringValue": attr.get("StringValue"),
                        "binaryValue": attr.get("BinaryValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": attr["DataType"],
                    }
                    for name, attr in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m.get("MD5OfBody"),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def failed_ids(response: Any, records: list[dict[str, Any]]) -> set[str]:
    """Message ids to keep, from a ``ReportBatchItemFailures`` answer.

    As Lambda does: no answer (or no failures) means all succeeded; an answer Lambda cannot
    read (not a dict, unknown or empty id) fails the whole batch.
    """
    every = {r["messageId"] for r in records}
    if response is None:
        return set()
    if not isinstance(response, dict):
        return every
    failures = response.get("batchItemFailures") or []
    ids = {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}
    if len(ids) != len(failures) or not ids <= every:
        return every
    return {i for i in ids if isinstance(i, str)}


def delete_succeeded(sqs: Any, queue_url: str, event: dict[str, Any], response: Any) -> None:
    """Delete the messages of ``event`` that ``response`` does not report as failed, in one
    ``DeleteMessageBatch`` (as the mapping does after each invocation)."""
    keep = failed_ids(response, event["Records"])
    handles = [r["receiptHandle"] for r in event["Records"] if r["messageId"] not in keep]
    if handles:
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)


@dataclass
class SqsPoller:
    """One function's event source mapping; several threads may run it (one receive at a time)."""

    spec: FunctionSpec
    queue_url: str
    sqs: Any
    invoke: Callable[[dict[str, Any]], Any]
    stop: threading.Event
    log: Callable[[str], None]
    poll_wait_s: float = 1.0
    batches: int = 0
    _receive_lock: threading.Lock = field(default_factory=threading.Lock)
    _count_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def queue_arn(self) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{self.queue_url.rsplit('/', 1)[-1]}"

    def poll_once(self) -> int:
        """One ReceiveMessage + invoke + delete round; how many messages it received."""
        # One receive at a time, and short: moto answers concurrent receives from one snapshot
        # of the in-flight groups, so two pollers could get two messages of one actor at once
        # (SQS never does; the actor host's order guard would hand one back).
        with self._receive_lock:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(self.spec.batch_size, 10),
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        messages = got.get("Messages", [])
        if not messages:
            self.stop.wait(min(self.poll_wait_s, 0.1))
            return 0
        event = sqs_event(messages, self.queue_arn)
        try:
            response = self.invoke(event)
        except Exception:
            self.log(f"actor_host raised (the whole batch returns):\n{traceback.format_exc()}")
            return len(messages)
        delete_succeeded(self.sqs, self.queue_url, event, response)
        with self._count_lock:
            self.batches += 1
        return len(messages)

    def run(self) -> None:
        """Poll until ``stop`` is set; an error is logged and polling goes on a second later."""
        while not self.stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self.stop.is_set():
                    return
                self.log(f"sqs poller:\n{traceback.format_exc()}")
                self.stop.wait(1.0)
