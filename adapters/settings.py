"""Settings: the only place that reads the environment. One pydantic model.

``Settings(**overrides)`` reads every field it is not given from the environment variable of the
same name in upper case (what pydantic-settings' ``BaseSettings`` does with no prefix). It is a
plain ``BaseModel`` on purpose: importing pydantic-settings costs about 0.5x of ``import boto3``
on its own (15 to 30 ms beyond what the handlers import anyway) for 30 scalar fields
(docs/decisions.md).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Settings(BaseModel):
    """Every knob the functions read, each set in ``template.yaml`` (a test checks that)."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        """Fields not passed in come from the environment (names are case-insensitive)."""
        if not isinstance(data, dict):
            return data
        names = set(cls.model_fields)
        env = {key.lower(): value for key, value in os.environ.items() if key.lower() in names}
        return {**env, **data}

    # Where data lives (names from template.yaml; the local stack sets the same).
    pool_errors_table: str = "runner-kit-pool-errors"
    pool_probes_table: str = "runner-kit-pool-probes"
    actors_table: str = "runner-kit-actors"
    messages_table: str = "runner-kit-messages"
    runner_configs_table: str = "runner-kit-runner-configs"
    slots_table: str = "runner-kit-slots"
    actor_messages_queue_url: str = ""
    actor_messages_dlq_url: str = ""

    # Tracker.
    success_threshold: int = Field(default=3, ge=1)
    pool_error_cache_ms: int = Field(default=500, ge=0)
    pool_error_stale_after_s: float | None = None

    # Runner starts.
    connect_timeout_s: float = Field(default=5.0, gt=0)
    init_timeout_s: float = Field(default=20.0, gt=0)
    """Shorter than ``gateway_ready_timeout_s``, so a hang before ``init`` becomes a pool error
    the first waiting client hears (``actor_runner_failed``), not its own ready timeout."""
    idle_timeout_s: float = Field(default=60.0, gt=0)
    max_event_bytes: int = Field(default=1024 * 1024, gt=0)

    # Actor host.
    deadline_margin_s: float = Field(default=10.0, ge=0)
    errors_cap: int = Field(default=20, ge=0)
    # Time an invocation may spend before its first start (reads, slot, claim): the longest
    # lifespan the API accepts leaves it, so a default config fits at an invocation's start.
    start_allowance_s: float = Field(default=5.0, ge=0)
    # How long one execution waits for a runner slot before handing its message back.
    slot_wait_s: float = Field(default=3.0, ge=0)
    # The queue's redrive maxReceiveCount: the host records its own dead letter before it.
    max_receive_count: int = Field(default=100, ge=2)
    # Final message records expire (DynamoDB TTL on ``expires_at``) this long after they end.
    message_retention_days: int = Field(default=30, ge=0)

    # Gateway.
    gateway_first_check_s: float = Field(default=1.0, ge=0)
    gateway_check_interval_s: float = Field(default=2.0, gt=0)
    gateway_ready_timeout_s: float = Field(default=25.0, gt=0)
    gateway_poll_interval_s: float = Field(default=0.25, gt=0)
    gateway_retry_after_s: int = Field(default=60, ge=1)
    gateway_deadline_margin_s: float = Field(default=1.0, ge=0)

    # Pool manager (and what the API accepts for a runner config).
    actor_host_timeout_s: float = Field(default=300.0, gt=0)
    probe_backoff_base_s: float = Field(default=60.0, gt=0)
    probe_backoff_max_s: float = Field(default=900.0, gt=0)
    silent_after_s: float = Field(default=60.0, ge=0)
    pool_manager_margin_s: float = Field(default=5.0, ge=0)

    # Runtime facts (set by Lambda itself).
    aws_lambda_function_name: str | None = None

    @model_validator(mode="after")
    def _init_before_ready(self) -> Settings:
        if self.init_timeout_s >= self.gateway_ready_timeout_s:
            raise ValueError(
                f"INIT_TIMEOUT_S ({self.init_timeout_s:g} s) must be shorter than "
                f"GATEWAY_READY_TIMEOUT_S ({self.gateway_ready_timeout_s:g} s): a runner that "
                "hangs before init must become a pool error the waiting client hears, not its "
                "own ready timeout"
            )
        return self

    @property
    def in_lambda(self) -> bool:
        return bool(self.aws_lambda_function_name)

    @property
    def max_request_lifespan_s(self) -> int:
        """The longest runner request the actor host can start at the beginning of an
        invocation: its timeout minus the deadline margin and the start allowance."""
        usable = self.actor_host_timeout_s - self.deadline_margin_s - self.start_allowance_s
        return max(1, min(900, int(usable)))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (a warm Lambda keeps them)."""
    return Settings()


def in_lambda() -> bool:
    """True when this process runs inside AWS Lambda."""
    return get_settings().in_lambda
