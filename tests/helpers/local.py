"""The embedded local stack as the end-to-end tests run it: on a free port, printing nothing."""

from __future__ import annotations

from typing import Any

from infra.local.stack import LocalStack

FAST = {
    "INIT_TIMEOUT_S": "2",
    "IDLE_TIMEOUT_S": "2",
    "PROBE_BACKOFF_BASE_S": "1",
    "PROBE_BACKOFF_MAX_S": "1",
    "GATEWAY_READY_TIMEOUT_S": "20",
}
"""Short start and probe timeouts, so a failing pool shows within a few seconds."""


def quiet_stack(**options: Any) -> LocalStack:
    """A ``LocalStack`` on a free API port, its log dropped; ``options`` as ``LocalStack`` takes."""
    return LocalStack(**{"api_port": 0, "quiet": True, "log": lambda line: None, **options})
