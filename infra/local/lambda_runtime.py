"""Call the template's handlers as Lambda does: imported once, one fresh context per invocation."""

from __future__ import annotations

import importlib
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from adapters.clock import SYSTEM_CLOCK
from core.ports import Clock
from infra.moto_server import LOCAL_CREDENTIALS
from infra.template import FunctionSpec

REGION: Final = LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"]
ACCOUNT_ID: Final = "123456789012"
STAGE: Final = "local"
API_FUNCTION: Final = "ApiFunction"
ACTOR_HOST_FUNCTION: Final = "ActorHostFunction"
POOL_MANAGER_FUNCTION: Final = "PoolManagerFunction"

Handler = Callable[[Any, Any], Any]


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: float
    clock: Clock = SYSTEM_CLOCK
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock.monotonic()

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before this invocation's timeout."""
        elapsed = self.clock.monotonic() - self.started
        return max(0, int((self.timeout_s - elapsed) * 1000))


def physical_name(logical_id: str) -> str:
    """A resource's local name: ``ActorMessagesDLQ`` -> ``runner-kit-local-actor-messages-dlq``.

    ``PoolErrorsTable`` -> ``runner-kit-local-pool-errors`` (the ``Table`` suffix is dropped).
    """
    name = logical_id.removesuffix("Table")
    out: list[str] = []
    for i, ch in enumerate(name):
        prev = name[i - 1] if i else ""
        nxt = name[i + 1] if i + 1 < len(name) else ""
        if ch.isupper() and i and (not prev.isupper() or (nxt and nxt.islower())):
            out.append("-")
        out.append(ch.lower())
    return f"runner-kit-{STAGE}-{''.join(out)}"


class Functions:
    """The template's functions: each handler imported on first use, invoked like Lambda."""

    def __init__(
        self,
        specs: Mapping[str, FunctionSpec],
        clock: Clock,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.specs = dict(specs)
        self.clock = clock
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._lock = threading.Lock()

    def handler(self, logical_id: str) -> Handler:
        """The function's handler, imported on first use (not before the environment is set)."""
        with self._lock:
            if logical_id not in self._handlers:
                spec = self.specs[logical_id]
                module = importlib.import_module(spec.module)
                self._handlers[logical_id] = getattr(module, spec.attr)
            return self._handlers[logical_id]

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Call a handler as Lambda would: one event, a fresh context with the timeout."""
        spec = self.specs[logical_id]
        context = LambdaContext(
            function_name=physical_name(logical_id),
            memory_limit_in_mb=spec.memory_mb,
            timeout_s=spec.timeout_s,
            clock=self.clock,
        )
        return self.handler(logical_id)(event, context)


def reset_cached_deps() -> None:
    """Forget settings and composition roots built under another environment."""
    from adapters.settings import get_settings

    get_settings.cache_clear()
    for name in ("functions.api.app", "functions.actor_host.app", "functions.pool_manager.app"):
        module = sys.modules.get(name)
        deps = getattr(module, "deps", None)
        clear = getattr(deps, "cache_clear", None)
        if callable(clear):
            clear()
