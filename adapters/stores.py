"""The DynamoDB stores of the functions' composition roots, all on one client, their tables
named by ``Settings``. ``fill`` hands each ``deps()`` dataclass the stores its fields name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cached_property
from typing import Any, Final, TypeVar

from adapters.clock import SYSTEM_CLOCK
from adapters.dynamodb.actors import DynamoDBActorStore
from adapters.dynamodb.messages import DynamoDBMessageStore
from adapters.dynamodb.pool_errors import DynamoDBPoolErrorStore
from adapters.dynamodb.probes import DynamoDBProbeStore
from adapters.dynamodb.runner_configs import DynamoDBRunnerConfigStore
from adapters.dynamodb.slots import DynamoDBSlotStore
from adapters.settings import Settings
from adapters.tracker import build_tracker

T = TypeVar("T")

STORE_OF_FIELD: Final = {
    "settings": "settings",
    "actors": "actors",
    "messages": "messages",
    "configs": "configs",
    "runner_configs": "configs",
    "slots": "slots",
    "probes": "probes",
    "tracker": "tracker",
}
"""A deps field name -> the ``DynamoDBStores`` attribute ``fill`` puts in it."""


class DynamoDBStores:
    """``settings``' tables on ``client`` (a boto3 DynamoDB client). Building them makes no
    request: each store only keeps its table name and the client."""

    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings, self.client = settings, client
        self.actors = DynamoDBActorStore(settings.actors_table, client)
        self.slots = DynamoDBSlotStore(settings.slots_table, client)
        self.configs = DynamoDBRunnerConfigStore(settings.runner_configs_table, client)
        self.probes = DynamoDBProbeStore(settings.pool_probes_table, client)
        self.retention_s = settings.message_retention_days * 86_400 or None
        """Final message records expire this long after they end (DynamoDB TTL)."""
        self.messages = DynamoDBMessageStore(
            settings.messages_table, client, retention_s=self.retention_s
        )
        """The messages table without the commit (the API and the pool manager): a record it
        makes final (a discard, a silent execution) expires like the host's."""
        self.tracker = build_tracker(
            settings,
            clock=SYSTEM_CLOCK,
            store=DynamoDBPoolErrorStore(settings.pool_errors_table, client),
        )

    @classmethod
    def from_environment(cls) -> DynamoDBStores:
        """On ``get_settings()`` and a default boto3 client (the API's and pool manager's)."""
        import boto3

        from adapters.settings import get_settings

        return cls(get_settings(), boto3.client("dynamodb"))

    @cached_property
    def committing_messages(self) -> DynamoDBMessageStore:
        """The messages table with the execution's commit (on ``actors`` and ``slots``) and the
        retention of final records (the actor host)."""
        return DynamoDBMessageStore(
            self.settings.messages_table,
            client=self.client,
            actors=self.actors,
            slots=self.slots,
            retention_s=self.retention_s,
        )

    def fill(self, deps_type: Callable[..., T], **others: Any) -> T:
        """A ``deps_type`` (a dataclass) with ``others``, and in each other field that
        ``STORE_OF_FIELD`` names, that store."""
        fields = {field.name for field in dataclasses.fields(deps_type)}  # type: ignore[arg-type]
        stores = {
            field: getattr(self, store)
            for field, store in STORE_OF_FIELD.items()
            if field in fields and field not in others
        }
        return deps_type(**stores, **others)
