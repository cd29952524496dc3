"""The one time format of the kit: what the stores keep and what the API sends."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC with microseconds and ``Z`` (``2026-01-02T03:04:05.000006Z``):
    sorts as text and parses back to the same instant. A naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Inverse of ``format_time`` (any ISO-8601 text with an offset or ``Z``), in UTC."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
