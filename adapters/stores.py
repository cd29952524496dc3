"""The DynamoDB stores of the functions' composition roots, each built once on first use, all on
one client, their tables named by ``Settings``. Each ``deps()`` takes the stores it needs."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from adapters.clock import SYSTEM_CLOCK
from adapters.dynamodb.actors import DynamoDBActorStore
from adapters.dynamodb.messages import DynamoDBMessageStore
from adapters.dynamodb.probes import DynamoDBProbeStore
from adapters.dynamodb.runner_configs import DynamoDBRunnerConfigStore
from adapters.dynamodb.slots import DynamoDBSlotStore
from adapters.settings import Settings
from adapters.tracker import PoolErrorTracker, build_tracker


class DynamoDBStores:
    """``settings``' tables on ``client`` (a boto3 DynamoDB client)."""

    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings, self.client = settings, client

    @cached_property
    def actors(self) -> DynamoDBActorStore:
        return DynamoDBActorStore(self.settings.actors_table, client=self.client)

    @cached_property
    def slots(self) -> DynamoDBSlotStore:
        return DynamoDBSlotStore(self.settings.slots_table, client=self.client)

    @cached_property
    def configs(self) -> DynamoDBRunnerConfigStore:
        return DynamoDBRunnerConfigStore(self.settings.runner_configs_table, client=self.client)

    @cached_property
    def probes(self) -> DynamoDBProbeStore:
        return DynamoDBProbeStore(self.settings.pool_probes_table, client=self.client)

    @cached_property
    def messages(self) -> DynamoDBMessageStore:
        """The messages table alone: no commit, no retention (the API and the pool manager)."""
        return DynamoDBMessageStore(self.settings.messages_table, client=self.client)

    @cached_property
    def committing_messages(self) -> DynamoDBMessageStore:
        """The messages table with the execution's commit (on ``actors`` and ``slots``) and the
        retention of final records (the actor host)."""
        return DynamoDBMessageStore(
            self.settings.messages_table,
            client=self.client,
            actors=self.actors,
            slots=self.slots,
            retention_s=self.settings.message_retention_days * 86_400 or None,
        )

    @cached_property
    def tracker(self) -> PoolErrorTracker:
        return build_tracker(self.settings, clock=SYSTEM_CLOCK)
