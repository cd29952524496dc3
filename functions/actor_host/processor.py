"""A Powertools ``AsyncBatchProcessor`` that keeps SQS FIFO order per message group.

Records of different groups (actors) run concurrently; records of one group run one after
another in batch order, and once one of them fails the group's later records are failed without
running (FIFO: a later message must not overtake an earlier one that will be retried). Partial
failure reporting (``batchItemFailures``) is Powertools' own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.exceptions import SQSFifoMessageGroupCircuitBreakerError


class GroupHeldBack(SQSFifoMessageGroupCircuitBreakerError):
    """An earlier record of this message group failed in this batch; this one did not run."""


def group_of(record: dict[str, Any]) -> str:
    """A record's FIFO message group (its own id when it has none: a standard queue)."""
    attributes = record.get("attributes") or {}
    group = attributes.get("MessageGroupId") if isinstance(attributes, dict) else None
    return str(group or record.get("messageId") or id(record))


class FifoGroupAsyncProcessor(AsyncBatchProcessor):
    """Concurrent across message groups, ordered and short-circuited within one."""

    def __init__(
        self, held_back: Callable[[dict[str, Any]], Awaitable[Any | None]] | None = None
    ) -> None:
        # Every record is reported individually; an all-failed batch is not a function error.
        super().__init__(EventType.SQS, raise_on_entire_batch_failure=False)
        # Asked about each record held back behind a failed one: a result means it was dealt
        # with (the actor host records its own dead letter at the queue's receive limit).
        self._held_back_hook = held_back
        self._previous: dict[int, int | None] = {}
        self._done: dict[int, asyncio.Event] = {}
        self._failed_groups: set[str] = set()

    def __call__(
        self, records: list[dict[str, Any]], handler: Any, lambda_context: Any = None
    ) -> Any:
        super().__call__(records, handler, lambda_context)
        last_of_group: dict[str, int] = {}
        self._previous = {}
        self._done = {}
        self._failed_groups = set()
        for record in records:
            group = group_of(record)
            self._previous[id(record)] = last_of_group.get(group)
            last_of_group[group] = id(record)
            self._done[id(record)] = asyncio.Event()
        return self

    def run(self, on_finish: Callable[[], Awaitable[None]] | None = None) -> list[Any]:
        """Process every record concurrently (one event loop per call), then ``on_finish``.

        Like Powertools' ``async_process``, plus a hook that runs on the same loop, so clients
        bound to it (httpx) are closed there.
        """

        async def closure() -> list[Any]:
            try:
                return list(
                    await asyncio.gather(*(self._async_process_record(r) for r in self.records))
                )
            finally:
                if on_finish is not None:
                    await on_finish()

        return asyncio.run(closure())

    @property
    def failed_records(self) -> list[Any]:
        """The records reported in ``batchItemFailures`` (data classes)."""
        return list(self.fail_messages)

    async def _async_process_record(self, record: dict[str, Any]) -> Any:
        key = id(record)
        try:
            previous = self._previous.get(key)
            if previous is not None:
                await self._done[previous].wait()
            group = group_of(record)
            if group in self._failed_groups:
                if self._held_back_hook is not None:
                    result = await self._held_back_hook(record)
                    if result is not None:
                        return self.success_handler(
                            record=self._to_batch_type(record, event_type=self.event_type),
                            result=result,
                        )
                exc = GroupHeldBack("an earlier record of this message group failed")
                return self.failure_handler(
                    record=self._to_batch_type(record, event_type=self.event_type),
                    exception=(GroupHeldBack, exc, None),
                )
            result = await super()._async_process_record(record)
            if result[0] == "fail":
                self._failed_groups.add(group)
            return result
        finally:
            done = self._done.get(key)
            if done is not None:
                done.set()
