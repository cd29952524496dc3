"""SQS: send actor messages, change a received message's visibility, dead-letter, reply.

Every call is synchronous boto3; async code calls these through ``asyncio.to_thread``. SQS
errors are classified here, by ``Error.Code``: callers see ``ReplyRefusedError``, never a code.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import JsonValue

from adapters.aws import LazyClient, error_code
from core.models import MessageEnvelope

_VISIBILITY_BATCH: Final = 10  # ChangeMessageVisibilityBatch takes at most 10 entries

# A receipt that is no longer in flight (its message was deleted, or its visibility already
# ran out) has no visibility left to change: not a failure.
_NOT_IN_FLIGHT_CODES: Final = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
    }
)

# Errors that mean a reply queue will never accept the reply (so retrying is pointless).
_REPLY_REFUSED_CODES: Final = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidAddress",
        "InvalidParameterValue",
    }
)


class ReplyRefusedError(Exception):
    """The reply queue will never take this reply (gone, not ours, or an invalid address)."""

    def __init__(self, reply_to: str, code: str) -> None:
        super().__init__(f"reply to {reply_to} refused: {code}")
        self.code = code


class SqsMessageQueue(LazyClient):
    """``ActorMessagesQueue``: one FIFO group per actor, deduplicated by ``message_id``."""

    service = "sqs"

    def __init__(self, queue_url: str, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client

    def send(self, envelope: MessageEnvelope, *, dedup_id: str | None = None) -> None:
        """Enqueue ``envelope`` (MessageGroupId = actor, MessageDeduplicationId = message, or
        ``dedup_id`` for a deliberate re-send: a resume inside the 5-minute window, a retried
        dead letter)."""
        self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=envelope.model_dump_json(),
            MessageGroupId=envelope.actor_id,
            MessageDeduplicationId=dedup_id or envelope.message_id,
        )

    def change_visibility_many(self, entries: Sequence[tuple[str, int]]) -> list[str]:
        """``(receipt_handle, timeout_s)`` pairs, 10 per call; returns the handles that failed
        (a receipt no longer in flight is not one: it has no visibility left to change)."""
        failed: list[str] = []
        for start in range(0, len(entries), _VISIBILITY_BATCH):
            chunk = entries[start : start + _VISIBILITY_BATCH]
            resp = self.client.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": timeout}
                    for i, (handle, timeout) in enumerate(chunk)
                ],
            )
            failed.extend(
                chunk[int(f["Id"])][0]
                for f in resp.get("Failed", [])
                if f.get("Code") not in _NOT_IN_FLIGHT_CODES
            )
        return failed


class SqsDeadLetterQueue(LazyClient):
    """``ActorMessagesDLQ``: messages the policy gave up on, with why, in the attributes."""

    service = "sqs"

    def __init__(self, queue_url: str, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client

    def send(
        self,
        body: str,
        *,
        group_id: str,
        dedup_id: str,
        error_code: str,
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Dead-letter ``body`` (the original SQS body, so a redrive replays it unchanged)."""
        attrs = {"error_code": error_code, **(attributes or {})}
        kwargs: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MessageBody": body,
            "MessageAttributes": {
                name: {"DataType": "String", "StringValue": value[:256] or "-"}
                for name, value in attrs.items()
            },
        }
        if self.queue_url.endswith(".fifo"):
            kwargs["MessageGroupId"] = group_id
            kwargs["MessageDeduplicationId"] = dedup_id
        self.client.send_message(**kwargs)


class SqsReplies(LazyClient):
    """Replies to a message's ``reply_to`` queue (a queue URL or a queue name)."""

    service = "sqs"

    def __init__(self, client: Any = None) -> None:
        self._client = client
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def _url(self, reply_to: str) -> str:
        if reply_to.startswith(("https://", "http://")):
            return reply_to
        with self._lock:
            url = self._urls.get(reply_to)
        if url is None:
            url = str(self.client.get_queue_url(QueueName=reply_to)["QueueUrl"])
            with self._lock:
                self._urls[reply_to] = url
        return url

    def send(self, reply_to: str, body: Mapping[str, JsonValue]) -> None:
        """Send ``body`` as JSON; FIFO reply queues dedupe on the message id. Raises
        ``ReplyRefusedError`` when the queue will never take it."""
        try:
            self._send(reply_to, body)
        except Exception as exc:
            code = error_code(exc)
            if code is not None and code in _REPLY_REFUSED_CODES:
                raise ReplyRefusedError(reply_to, code) from exc
            raise

    def _send(self, reply_to: str, body: Mapping[str, JsonValue]) -> None:
        url = self._url(reply_to)
        kwargs: dict[str, Any] = {
            "QueueUrl": url,
            "MessageBody": json.dumps(body, separators=(",", ":")),
        }
        if url.endswith(".fifo"):
            kwargs["MessageGroupId"] = str(body.get("actor_id", "reply"))
            kwargs["MessageDeduplicationId"] = str(body.get("message_id", "reply"))
        self.client.send_message(**kwargs)
