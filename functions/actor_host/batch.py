"""One SQS batch: records in, a ``Verdict`` per record, the partial batch failures out.

Records of different FIFO groups (actors) run concurrently; records of one group run one after
another in batch order, and once one of them is kept in the queue the group's later records are
held back without running (FIFO: a later message must not overtake an earlier one that will be
retried). Every kept record becomes visible again after its verdict's ``visibility_s``, all of
them in one batched call; the answer lists them as ``batchItemFailures``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from core.models import ActorRecord, MessageEnvelope, PoolKey, RunnerConfig
from functions.actor_host.deps import HostDeps

Outcome = Literal[
    "succeeded",
    "retry_scheduled",
    "failed",
    "dead_lettered",
    "stopped",
    "duplicate",
    "malformed",
    "missing_execution_id",
    "handed_back",
    "held_back",
    "out_of_order",
    "busy",
    "infra_error",
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What became of one record: done (deleted by the event source) or kept in the queue,
    visible again after ``visibility_s`` seconds."""

    outcome: Outcome
    visibility_s: int | None = None
    detail: str = ""

    @property
    def kept(self) -> bool:
        """Whether the record stays in the queue (a batch item failure)."""
        return self.visibility_s is not None

    @classmethod
    def keep(cls, outcome: Outcome, visibility_s: int, detail: str = "") -> Verdict:
        """Keep the record; visible again after ``visibility_s`` seconds."""
        return cls(outcome, visibility_s, detail)


HELD_BACK: Final = Verdict.keep("held_back", 0, "an earlier record of this message group was kept")
"""A follower of a kept record: back at once (FIFO delivers it only after the earlier one)."""


@dataclass(frozen=True, slots=True)
class RecordInfo:
    """The SQS facts of one record the host needs."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    group_id: str | None


def record_info(raw: Mapping[str, Any]) -> RecordInfo:
    """From a raw SQS record of the event (odd attributes tolerated)."""
    attributes = raw.get("attributes")
    if not isinstance(attributes, dict):
        attributes = {}
    try:
        receive_count = int(attributes.get("ApproximateReceiveCount", "1"))
    except (TypeError, ValueError):
        receive_count = 1
    body = raw.get("body")
    return RecordInfo(
        message_id=str(raw.get("messageId", "")),
        receipt_handle=str(raw.get("receiptHandle", "")),
        body=body if isinstance(body, str) else "",
        receive_count=receive_count,
        group_id=group if isinstance(group := attributes.get("MessageGroupId"), str) else None,
    )


def group_of(record: Mapping[str, Any]) -> str:
    """A record's FIFO message group (its own id when it has none: a standard queue)."""
    return str(record_info(record).group_id or record.get("messageId") or id(record))


def first_actor_of_each_group(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """SQS message id -> actor id of each group's first record (malformed ones skipped)."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for record in records:
        group = group_of(record)
        if group in seen:
            continue
        seen.add(group)
        try:
            envelope = MessageEnvelope.model_validate_json(record.get("body") or "")
        except ValueError:
            continue
        out[str(record.get("messageId"))] = envelope.actor_id
    return out


class BatchReads:
    """Reads shared by a batch: the actors of each group's first record in one call, and each
    pool's runner config once."""

    def __init__(self, deps: HostDeps, prefetch: Mapping[str, str]) -> None:
        self._deps = deps
        # SQS message id -> actor id (``first_actor_of_each_group``): a later record of a group
        # reads its actor itself, as it must see the state its group's previous turn left.
        self._prefetch = dict(prefetch)
        self._prefetched: asyncio.Future[dict[str, ActorRecord]] | None = None
        self._configs: dict[str, asyncio.Future[RunnerConfig | None]] = {}

    async def actor(self, sqs_message_id: str, actor_id: str) -> ActorRecord | None:
        """The actor of this record (from the batched read for a group's first record)."""
        deps = self._deps
        if self._prefetch.get(sqs_message_id) != actor_id:
            return await deps.io(deps.actors.get, actor_id)
        if self._prefetched is None:
            ids = sorted(set(self._prefetch.values()))
            self._prefetched = asyncio.ensure_future(deps.io(deps.actors.get_many, ids))
        return (await self._prefetched).get(actor_id)

    async def config(self, pool: PoolKey) -> RunnerConfig | None:
        """The pool's runner config, read once per batch (one batch, many actors)."""
        future = self._configs.get(pool.id)
        if future is None:
            future = asyncio.ensure_future(self._deps.io(self._deps.configs.get, pool))
            self._configs[pool.id] = future
        return await future


RecordHandler = Callable[[Mapping[str, Any]], Awaitable[Verdict]]


def run_batch(
    records: Sequence[Mapping[str, Any]],
    execute: RecordHandler,
    *,
    held_back: RecordHandler,
    on_finish: Callable[[], Awaitable[None]] | None = None,
) -> list[Verdict]:
    """Each record's verdict, in record order: ``execute`` for a record whose group has kept
    none so far, ``held_back`` for the rest. One event loop per call; ``on_finish`` runs on it,
    so clients bound to it (httpx) are closed there."""
    verdicts: list[Verdict | None] = [None] * len(records)
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(group_of(record), []).append(index)

    async def run_group(indexes: list[int]) -> None:
        kept = False
        for index in indexes:
            handler = held_back if kept else execute
            verdict = await handler(records[index])
            verdicts[index] = verdict
            kept = kept or verdict.kept

    async def main() -> None:
        try:
            await asyncio.gather(*(run_group(indexes) for indexes in groups.values()))
        finally:
            if on_finish is not None:
                await on_finish()

    asyncio.run(main())
    assert all(v is not None for v in verdicts)  # every group ran each of its records
    return [v for v in verdicts if v is not None]


def answer(
    records: Sequence[Mapping[str, Any]], verdicts: Sequence[Verdict], deps: HostDeps
) -> dict[str, Any]:
    """Apply the kept records' visibilities in one batched call (on ``deps.queue``); returns the
    event source's ``{"batchItemFailures": [...]}``."""
    kept = [(record, v) for record, v in zip(records, verdicts, strict=True) if v.kept]
    if kept and deps.queue is not None:
        entries = [(str(r.get("receiptHandle", "")), v.visibility_s or 0) for r, v in kept]
        try:
            refused = deps.queue.change_visibility_many(entries)
        except Exception:
            # Not fatal: the records keep the queue's visibility timeout and come back later.
            deps.logger.exception("ChangeMessageVisibility failed")
        else:
            if refused:
                deps.logger.warning("visibility not changed", extra={"receipts": len(refused)})
    return {"batchItemFailures": [{"itemIdentifier": str(r.get("messageId"))} for r, _ in kept]}
