"""What the actor host runs on: ``HostDeps`` (stores, runner client, queues, clock)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from adapters.settings import Settings
from adapters.sqs import SqsDeadLetterQueue, SqsMessageQueue, SqsReplies
from core.models import RunnerConfig
from core.ports import (
    ActorStore,
    Clock,
    MessageStore,
    RunnerConfigStore,
    RunnerStarter,
    SlotStore,
    Tracker,
)

T = TypeVar("T")


@dataclass
class HostDeps:
    """Everything an execution touches; ``functions.actor_host.app.deps`` builds the real one."""

    settings: Settings
    actors: ActorStore
    messages: MessageStore
    configs: RunnerConfigStore
    slots: SlotStore
    tracker: Tracker
    runner: Callable[[], RunnerStarter]
    target_for: Callable[[RunnerConfig], Any]
    queue: SqsMessageQueue | None
    dlq: SqsDeadLetterQueue | None
    replies: SqsReplies
    logger: Any
    clock: Clock
    rand: Callable[[], float] = field(default=lambda: __import__("random").random())
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    slot_poll_s: float = 0.2
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=32, thread_name_prefix="actor-host")
    )

    async def io(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking I/O on the host's pool, keeping this task's log keys (contextvars)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self.executor, call)
