"""The failure and deadline policy as pure decisions: retryable or not, the one backoff function,
whether work fits before a deadline, and the answer to the three questions (what happens to the
actor, to the message, what the sender hears).

Randomness is a parameter (``rand`` in ``[0, 1)``), so every decision is reproducible in tests.
The message record's ``attempts`` is the source of truth for "how many times did this run";
SQS's ``ApproximateReceiveCount`` only drives the backoff of infrastructure hiccups that never
reached a runner (see docs/actor_host.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from core.errors import (
    ActorFailed,
    ServerlessHttpError,
    ServerlessInvalidBase64,
    ServerlessInvalidPayload,
)
from core.models import ErrorPolicy

SQS_MAX_VISIBILITY_S: Final = 43_200
"""ChangeMessageVisibility accepts at most 12 hours."""

RETRYABLE_4XX: Final = frozenset({408, 429})
"""Client errors that mean "try again later" (request timeout, too many requests)."""

MessageFate = Literal["retry", "discard", "dead_letter"]
ActorFate = Literal["continue", "stop"]


def is_retryable(error: Any, *, actor_retryable: bool = True) -> bool:
    """Whether another attempt could succeed.

    Not retryable: a payload the runner will send again the same way (invalid base64 or frame),
    an HTTP 4xx other than 408/429, and an ``actor_failed`` whose frame said ``retryable: false``.
    Everything else (5xx, transport, timeouts, ``runner_no_response``, internal) is retryable.
    """
    if isinstance(error, ServerlessInvalidBase64 | ServerlessInvalidPayload):
        return False
    if isinstance(error, ServerlessHttpError):
        return not (400 <= error.status_code < 500 and error.status_code not in RETRYABLE_4XX)
    if isinstance(error, ActorFailed):
        return actor_retryable
    return True


def backoff_s(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    rand: float,
    jitter: float = 1.0,
    factor: float = 2.0,
) -> float:
    """Exponential backoff: ``min(max_s, base_s * factor**(attempt-1))``, the last ``jitter``
    share of it randomized by ``rand``: ``ceiling * (1 - jitter + jitter * rand)``.

    ``attempt`` is the number of the attempt that just failed (1 for the first). ``jitter=1`` is
    full jitter (``rand * ceiling``, retries); ``jitter=0.1`` waits 90-100 % of the ceiling
    (probes: never much earlier than planned, still spread over ticks).
    """
    exponent = max(attempt, 1) - 1
    # Cap the exponent first so huge attempt counts never overflow a float.
    ceiling = min(max_s, base_s * math.pow(factor, min(exponent, 64)))
    share = max(0.0, min(jitter, 1.0))
    return ceiling * (1.0 - share + share * max(0.0, min(rand, 1.0)))


def fits_deadline(remaining_s: float, *, margin_s: float, lifespan_s: float) -> bool:
    """Work may start only if its whole ``lifespan_s`` fits in the time left minus a safety
    margin (an execution is never killed mid-commit; a probe's timeout is never reported as
    the endpoint's error)."""
    return remaining_s - margin_s >= lifespan_s


def effective_lifespan_s(request_lifespan: int, *, max_lifespan_s: int) -> int:
    """The lifespan an execution runs with: the config's, capped at what the host can hold.

    The API refuses a longer one when a config is saved; the cap covers configs saved before a
    deployment lowered the actor host's timeout, so they run (shorter) instead of never fitting.
    """
    return max(1, min(request_lifespan, max_lifespan_s))


def visibility_timeout_s(delay_s: float) -> int:
    """A delay as a ChangeMessageVisibility value: whole seconds, rounded up, within SQS limits."""
    return max(0, min(SQS_MAX_VISIBILITY_S, math.ceil(delay_s)))


@dataclass(frozen=True)
class FailureDecision:
    """The answer to the three questions for one failed attempt."""

    message: MessageFate
    actor: ActorFate
    delay_s: float = 0.0
    final: bool = True

    @property
    def status(self) -> Literal["pending", "discarded", "dead_lettered"]:
        """The message record's status after this decision."""
        if not self.final:
            return "pending"
        return "dead_lettered" if self.message == "dead_letter" else "discarded"

    @property
    def reply(self) -> bool:
        """The sender's reply queue hears about final outcomes only (a retry is not an outcome)."""
        return self.final


def decide(
    policy: ErrorPolicy,
    *,
    attempts: int,
    retryable: bool,
    rand: float,
) -> FailureDecision:
    """Apply ``policy`` to a failed attempt (``attempts`` counts it).

    - ``on_message="retry"``: retry with backoff while retryable and ``attempts < max_attempts``;
      after the last attempt (or at once when not retryable) the message is dead-lettered.
    - ``on_message="discard"`` / ``"dead_letter"``: no retry; the message is dropped (status
      ``discarded``) or dead-lettered at once.
    - ``on_actor="stop"`` stops the actor only when the failure is final: while a message is
      being retried the actor keeps its inbox, so the retry can still run.
    """
    if policy.on_message == "retry" and retryable and attempts < policy.max_attempts:
        delay = backoff_s(
            attempts, base_s=policy.backoff_base_s, max_s=policy.backoff_max_s, rand=rand
        )
        return FailureDecision(message="retry", actor="continue", delay_s=delay, final=False)
    fate: MessageFate = "discard" if policy.on_message == "discard" else "dead_letter"
    return FailureDecision(message=fate, actor=policy.on_actor, final=True)


INFRA_BACKOFF_BASE_S: Final = 1.0
INFRA_BACKOFF_MAX_S: Final = 60.0


def infra_backoff_s(receive_count: int, *, rand: float) -> float:
    """Backoff for a record that failed before reaching a runner (store or network hiccup).

    Such failures do not count as attempts; SQS's receive count paces them instead.
    """
    return backoff_s(
        receive_count, base_s=INFRA_BACKOFF_BASE_S, max_s=INFRA_BACKOFF_MAX_S, rand=rand
    )
