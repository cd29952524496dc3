"""One way to log and measure in every function: Powertools Logger and Metrics.

- ``get_logger(service)``: the Powertools Logger (JSON lines on stdout, level from
  ``POWERTOOLS_LOG_LEVEL``, i.e. the template's ``LogLevel``). The Lambda runtime leaves the root
  logger at WARNING, so a stdlib ``logging.getLogger(__name__)`` line at INFO would be lost; the
  kit's own stdlib loggers (``functions.*``, ``adapters.*``, ``runner_kit.*``) are routed through
  the same handler, so they come out as JSON with the same keys too.
- ``run(service, invoke, event, context)``: the wrapper of every ``lambda_handler``. It injects
  the Lambda context into the logger, gives ``invoke`` an ``Invocation`` to add metrics and
  summary fields to, publishes the metrics once as EMF (with ``ColdStart`` on the first
  invocation of the process) and logs one ``invocation summary`` line, the same shape in all
  three functions: ``function``, ``status`` (``ok`` or ``error``), ``duration_ms`` and the
  function's own ``summary`` object.

Powertools is imported on first use, not when a handler module is imported (cold start), and no
environment variable is read at import.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

METRICS_NAMESPACE: Final = "RunnerKit"
KIT_LOGGERS: Final = ("functions", "adapters", "core", "runner_kit")
"""Parents of the kit's stdlib loggers; they get the Powertools handler and level."""
SUMMARY_MESSAGE: Final = "invocation summary"

T = TypeVar("T")

_cold_start = True


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current ``sys.stdout`` (Lambda's, or a test's capture of it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


_LOGGERS: dict[str, Any] = {}
_LOGGERS_LOCK: Final = threading.Lock()


def get_logger(service: str) -> Any:
    """The Powertools Logger of ``service``, built once per process."""
    # Built under a lock: two Loggers set up at once (threads building deps together, as the
    # chaos host's pollers do) can come out without a formatter, and every log call then fails.
    with _LOGGERS_LOCK:
        logger = _LOGGERS.get(service)
        if logger is None:
            logger = _LOGGERS[service] = _build_logger(service)
        return logger


def _build_logger(service: str) -> Any:
    from aws_lambda_powertools import Logger

    logger = Logger(service=service, logger_handler=_StdoutHandler())
    handler = logger.registered_handler
    for name in KIT_LOGGERS:
        kit = logging.getLogger(name)
        kit.handlers = [handler]
        kit.setLevel(logger.log_level)
        kit.propagate = False
    return logger


def preload() -> None:
    """Import Powertools now: SnapStart's INIT runs this before the snapshot, so a restored
    copy does not import it in its first invocation (``adapters.snapstart``)."""
    import aws_lambda_powertools.logging
    import aws_lambda_powertools.metrics  # noqa: F401


def mark_cold_start() -> None:
    """The next invocation reports ``ColdStart`` (a SnapStart restore is one)."""
    global _cold_start
    _cold_start = True


@dataclass(frozen=True)
class _Metric:
    name: str
    value: float
    unit: str
    dimensions: tuple[tuple[str, str], ...]


@dataclass
class Invocation:
    """What one invocation adds: metrics (published as EMF at its end) and summary fields."""

    service: str
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[_Metric] = field(default_factory=list)

    def metric(self, name: str, value: float, unit: str = "Count", **dimensions: str) -> None:
        """One value; ``dimensions`` beyond ``service`` make it its own EMF blob."""
        self.metrics.append(_Metric(name, value, unit, tuple(sorted(dimensions.items()))))


def publish(invocation: Invocation, *, cold_start: bool = False) -> None:
    """Write the invocation's metrics as CloudWatch EMF lines (nothing when there are none)."""
    if not (invocation.metrics or cold_start):
        return
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric

    plain = EphemeralMetrics(namespace=METRICS_NAMESPACE, service=invocation.service)
    if cold_start:
        plain.add_metric(name="ColdStart", unit="Count", value=1)
    for m in invocation.metrics:
        if not m.dimensions:
            plain.add_metric(name=m.name, unit=m.unit, value=m.value)
            continue
        with single_metric(
            name=m.name, unit=MetricUnit(m.unit), value=m.value, namespace=METRICS_NAMESPACE
        ) as metric:
            metric.add_dimension(name="service", value=invocation.service)
            for key, value in m.dimensions:
                metric.add_dimension(name=key, value=value)
    if plain.metric_set:
        plain.flush_metrics()


def run(
    service: str,
    invoke: Callable[[Any, Any, Invocation], T],
    event: Any,
    context: Any,
    *,
    keys: Mapping[str, str] | None = None,
) -> T:
    """Run one invocation of ``service`` with the Lambda context and ``keys`` in every log
    line; publish its metrics and log its summary, also when it raises."""
    global _cold_start
    logger = get_logger(service)
    cold, _cold_start = _cold_start, False
    invocation = Invocation(service)
    status = "error"
    started = time.perf_counter()

    def body(event: Any, context: Any) -> T:
        nonlocal status
        # Per-record keys (actor_id, ...) of the previous invocation must not leak into this one.
        logger.thread_safe_clear_keys()
        if keys:
            logger.append_keys(**keys)
        result = invoke(event, context, invocation)
        status = "ok"
        return result

    try:
        if hasattr(context, "aws_request_id") and hasattr(context, "function_name"):
            return logger.inject_lambda_context(clear_state=True)(body)(event, context)  # type: ignore[no-any-return]
        logger.clear_state()
        return body(event, context)
    finally:
        try:
            publish(invocation, cold_start=cold)
        except Exception:
            logger.exception("publishing metrics failed")
        logger.info(
            SUMMARY_MESSAGE,
            extra={
                "function": service,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "summary": invocation.summary,
            },
        )
