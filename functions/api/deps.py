"""What a request may touch (``ApiDeps``), and the queue and tracker as the API uses them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from adapters.settings import Settings
from core.models import MessageEnvelope, PoolKey
from core.ports import ActorStore, Clock, MessageStore, ProbeStore, RunnerConfigStore

if TYPE_CHECKING:  # the tracker's value type; the module itself loads on first use
    from adapters.tracker import PoolErrorStatus


class Queue(Protocol):
    """The actor messages queue."""

    def send(self, envelope: MessageEnvelope, *, dedup_id: str | None = None) -> Any:
        """Queue the pointer to a persisted message."""


class Tracker(Protocol):
    """The pool error tracker's reads, and the retire of a deleted pool."""

    def active_error(self, pool: PoolKey) -> PoolErrorStatus | None:
        """The pool's active error, or ``None`` while it is healthy."""

    def active_errors(self, pools: Iterable[PoolKey]) -> dict[PoolKey, PoolErrorStatus]:
        """The active errors of ``pools`` (healthy ones left out), in one batched read."""

    def retire(self, pool: PoolKey) -> None:
        """Forget the pool's error: its config was deleted or created again."""


UrlCheck = Callable[[str, bool], str | None]
"""``(url, allow_private_network) -> refusal reason | None`` (the outbound safety policy)."""


@dataclass
class ApiDeps:
    """Everything a request may touch; built once per warm Lambda by ``app.deps()``."""

    settings: Settings
    runner_configs: RunnerConfigStore
    actors: ActorStore
    messages: MessageStore
    queue: Queue
    tracker: Tracker
    probes: ProbeStore
    check_url: UrlCheck
    actor_exists_error: type[Exception]
    clock: Clock
    sleep: Callable[[float], None]
    new_id: Callable[[], str]
