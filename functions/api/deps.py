"""What a request may touch (``ApiDeps``), and the queue as the API uses it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.settings import Settings
from core.models import MessageEnvelope
from core.ports import ActorStore, Clock, MessageStore, ProbeStore, RunnerConfigStore, Tracker


class Queue(Protocol):
    """The actor messages queue."""

    def send(self, envelope: MessageEnvelope, *, dedup_id: str | None = None) -> Any:
        """Queue the pointer to a persisted message."""


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
