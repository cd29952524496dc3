"""The one item codec of the DynamoDB stores: time, JSON text and numbers as attributes, the
message and actor items, their page cursors, and the conditions the message writes share.

Item shapes: ``MessagesTable`` (hash ``actor_id``, range ``message_id``) and ``ActorsTable``
(hash ``actor_id``): plain attributes for what conditions look at, JSON text for free-form values
(so any JSON, floats included, round-trips exactly), times as ``format_time`` text (so they sort).
A message also carries the execution's bookkeeping (``docs/actor_host.md``), not part of
``MessageRecord``: ``open_key`` while not final (index ``open_by_actor``, the order guard),
``running_shard``/``running_since`` while running (index ``running_by_shard``, 16 shards),
``lease_owner``/``lease_until`` (epoch s) while an execution holds it, ``dlq_sent_at``/
``replied_at`` (the outbox), ``attempt_base``/``retries`` (a retried dead letter's fresh budget)
and ``expires_at`` (TTL) on final records when a retention is set.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, TypeVar

from pydantic import BaseModel

from adapters.dynamodb.expressions import Cond, among, eq, lt, missing
from core.models import TERMINAL_STATUSES, MessageRecord
from core.ports import StoredMessage
from core.times import format_time, parse_time


def json_attr(value: Any) -> dict[str, str]:
    """A JSON value as a compact JSON text attribute (NaN/Infinity refused: not JSON)."""
    return {"S": json.dumps(value, separators=(",", ":"), allow_nan=False)}


_Record = TypeVar("_Record", bound=BaseModel)


def with_timestamps(record: _Record, now: datetime) -> _Record:
    """``record`` with ``created_at``/``updated_at`` set to ``now`` where they are unset."""
    current = {name: getattr(record, name) for name in ("created_at", "updated_at")}
    return record.model_copy(update={k: v or now for k, v in current.items()})


def encode_fields(
    item: dict[str, Any],
    record: BaseModel,
    *,
    texts: Iterable[str] = (),
    json_fields: Iterable[str] = (),
    time_fields: Iterable[str] = (),
) -> dict[str, Any]:
    """``item`` plus ``record``'s set text fields, JSON fields (as JSON text) and datetimes."""
    doc = record.model_dump(mode="json")
    for name in texts:
        if doc.get(name) is not None:
            item[name] = {"S": doc[name]}
    for name in json_fields:
        if doc.get(name) is not None:
            item[name] = json_attr(doc[name])
    for name in time_fields:
        value = getattr(record, name)
        if value is not None:
            item[name] = {"S": format_time(value)}
    return item


def decode_fields(
    doc: dict[str, Any],
    item: dict[str, Any],
    *,
    texts: Iterable[str] = (),
    json_fields: Iterable[str] = (),
    time_fields: Iterable[str] = (),
) -> dict[str, Any]:
    """Inverse of ``encode_fields``: the fields ``item`` has, into ``doc``."""
    for name in texts:
        if name in item:
            doc[name] = item[name]["S"]
    for name in json_fields:
        if name in item:
            doc[name] = json.loads(item[name]["S"])
    for name in time_fields:
        if name in item:
            doc[name] = parse_time(item[name]["S"])
    return doc


def number(item: dict[str, Any], name: str, default: int = 0) -> int:
    """An integer attribute of ``item`` (``default`` if it is missing)."""
    return int(item[name]["N"]) if name in item else default


def encode_cursor(text: str) -> str:
    """An opaque page cursor: ``text`` (the actor list's last actor id) in URL-safe base64."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Inverse of ``encode_cursor``; a malformed cursor raises ``ValueError``."""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc


# --- messages ------------------------------------------------------------------------------

RUNNING_SHARDS: Final = 16
RUNNING_ATTRS: Final = ("running_shard", "running_since")
"""Removed when a message stops running (handed back, retried or final)."""
_MSG_TEXTS: Final = ("disposition", "runner_id", "reply_to")
_MSG_JSON: Final = ("input", "result", "error")
_MSG_TIMES: Final = ("created_at", "updated_at", "started_at", "finished_at", "next_attempt_at")


def open_key(created_at: datetime | None, message_id: str) -> str:
    """The ``open_by_actor`` sort key: creation order, the id breaking ties."""
    return f"{format_time(created_at) if created_at else ''}#{message_id}"


def running_shard(actor_id: str) -> str:
    """The ``running_by_shard`` hash key of an actor's running message (stable, 0..15)."""
    return str(zlib.crc32(actor_id.encode()) % RUNNING_SHARDS)


def message_key(actor_id: str, message_id: str) -> dict[str, Any]:
    """The key of a message item."""
    return {"actor_id": {"S": actor_id}, "message_id": {"S": message_id}}


def message_to_item(message: MessageRecord) -> dict[str, Any]:
    """MessageRecord -> low-level DynamoDB item."""
    item = message_key(message.actor_id, message.message_id)
    item["status"] = {"S": message.status}
    item["attempts"] = {"N": str(message.attempts)}
    encode_fields(item, message, texts=_MSG_TEXTS, json_fields=_MSG_JSON, time_fields=_MSG_TIMES)
    if message.status not in TERMINAL_STATUSES:
        item["open_key"] = {"S": open_key(message.created_at, message.message_id)}
    return item


def stored_from_item(item: dict[str, Any]) -> StoredMessage:
    """Low-level DynamoDB item -> StoredMessage."""
    doc: dict[str, Any] = {
        "actor_id": item["actor_id"]["S"],
        "message_id": item["message_id"]["S"],
        "status": item["status"]["S"],
        "attempts": number(item, "attempts"),
    }
    decode_fields(doc, item, texts=_MSG_TEXTS, json_fields=_MSG_JSON, time_fields=_MSG_TIMES)
    return StoredMessage(
        record=MessageRecord.model_validate(doc),
        lease_owner=item["lease_owner"]["S"] if "lease_owner" in item else None,
        lease_until=float(item["lease_until"]["N"]) if "lease_until" in item else None,
        dlq_sent="dlq_sent_at" in item,
        replied="replied_at" in item,
        attempt_base=number(item, "attempt_base"),
        retries=number(item, "retries"),
        open_key=item["open_key"]["S"] if "open_key" in item else None,
    )


def encode_message_cursor(record: MessageRecord) -> str:
    """An opaque page cursor of a message list: its last message."""
    created = format_time(record.created_at) if record.created_at else ""
    return encode_cursor(json.dumps({"c": created, "m": record.message_id}, separators=(",", ":")))


def decode_message_cursor(cursor: str) -> tuple[str, str]:
    """Inverse of ``encode_message_cursor``: ``(created_at, message_id)``; ``ValueError`` if bad."""
    try:
        doc = json.loads(decode_cursor(cursor))
    except ValueError as exc:
        raise ValueError("malformed cursor") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("c"), str) or not doc.get("m"):
        raise ValueError("malformed cursor")
    if not isinstance(doc["m"], str):
        raise ValueError("malformed cursor")
    return doc["c"], doc["m"]


NOT_FINAL: Final = ~among("status", sorted(TERMINAL_STATUSES))
"""The message is not in a final status (a missing item counts as not final)."""


def held_by(owner: str) -> Cond:
    """This execution holds the message's lease."""
    return eq("lease_owner", {"S": owner})


def unheld(now: datetime) -> Cond:
    """Nobody holds the message, or the holder's lease ran out (a crashed Lambda)."""
    return missing("lease_until") | lt("lease_until", {"N": repr(now.timestamp())})


def final_fields(now: datetime, retention_s: float | None) -> dict[str, Any]:
    """What every final write sets: ``finished_at``, and ``expires_at`` (TTL) if kept."""
    out: dict[str, Any] = {"finished_at": {"S": format_time(now)}}
    if retention_s:
        out["expires_at"] = {"N": str(int(now.timestamp() + retention_s))}
    return out


FINAL_REMOVES: Final = ("next_attempt_at", "open_key", *RUNNING_ATTRS)
"""What every final write removes: the retry time and both index keys."""
