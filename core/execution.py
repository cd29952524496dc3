"""Pure decisions of one execution: may it start before the deadline, and what the sender hears."""

from __future__ import annotations

from typing import Any

from pydantic import JsonValue

from core.models import MessageRecord


def fits_deadline(remaining_s: float, *, margin_s: float, lifespan_s: float) -> bool:
    """An execution may start only if it can run its whole ``request_lifespan`` before the
    Lambda's remaining time minus a safety margin (so it never gets killed mid-commit)."""
    return remaining_s - margin_s >= lifespan_s


def reply_body(record: MessageRecord) -> dict[str, JsonValue]:
    """What a ``reply_to`` queue receives once a message reaches a final status."""
    body: dict[str, Any] = {
        "v": 1,
        "actor_id": record.actor_id,
        "message_id": record.message_id,
        "status": record.status,
        "attempts": record.attempts,
    }
    if record.status == "succeeded":
        body["result"] = record.result
    else:
        body["error"] = record.error
        body["disposition"] = record.disposition
    return body
