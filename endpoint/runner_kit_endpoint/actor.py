"""What an author writes against: ``ActorError``, ``Result``, ``Context``; and how it is called.

An actor function is ``fn(state, input)`` or ``fn(state, input, ctx)``, plain or ``async``. It
returns ``Result(output, state)`` or a tuple ``(output, state)``, or raises ``ActorError``.
Every way it can go wrong becomes the final frame of its stream, never a broken stream:

- ``ActorError(code, message, retryable)``: an ``error`` frame with exactly those fields;
- any other exception: ``error`` ``unhandled_exception`` (retryable false; traceback logged);
- a return value that is not a result, or not JSON: ``error`` ``invalid_result``;
- the lifespan deadline passing first: ``error`` ``deadline_exceeded`` (retryable true).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from runner_kit_endpoint import wire

logger = logging.getLogger("runner_kit_endpoint")

MAX_MESSAGE_CHARS: Final = 1024
"""Error messages from unexpected exceptions are cut to this many characters."""

ActorFunction = Callable[..., Any]
"""``(state, input)`` or ``(state, input, ctx)``, sync or async, returning a ``Result``."""


class ActorError(Exception):
    """The actor's own code failed; becomes an ``error`` frame (``retryable`` hints a retry)."""

    def __init__(self, code: str, message: str = "", *, retryable: bool = False) -> None:
        if not isinstance(code, str) or not 1 <= len(code) <= 256:
            raise ValueError("an ActorError code is a string of 1-256 characters")
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.retryable = retryable


class Result(NamedTuple):
    """What an actor function returns: the message's ``output`` and the actor's new ``state``."""

    output: Any
    state: Any


@dataclass(eq=False)
class Context:
    """One execution, as the actor function sees it (pass a third parameter to receive it)."""

    runner_id: str
    actor_id: str | None
    message_id: str | None
    pool: str | None
    total_slots: int | None
    deadline: float | None
    """``time.monotonic()`` by which the function must return (from the request lifespan)."""
    _sink: Callable[[bytes], None]
    _cancelled: threading.Event

    def emit(self, data: Any) -> None:
        """Send an intermediate ``output`` frame now (``data`` must be JSON; checked here)."""
        if self._cancelled.is_set():
            return  # the stream is gone: nobody reads it any more
        self._sink(wire.output_event(data))

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: the request set no lifespan)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    @property
    def cancelled(self) -> bool:
        """True once nobody waits for the result: deadline, shutdown, or the client left."""
        return self._cancelled.is_set()


def wants_context(fn: ActorFunction) -> bool:
    """True if ``fn`` takes a third positional argument (the ``Context``)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            positional += 1
    return positional >= 3


def is_async(fn: ActorFunction) -> bool:
    """True for ``async def`` functions (and callables whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a class instance with async __call__
    )


def final_event(value: Any) -> bytes:
    """The ``done`` frame of a returned value, or ``invalid_result`` if it is not a result."""
    if isinstance(value, tuple) and len(value) == 2:
        output, state = value
        try:
            return wire.done_event(output, state)
        except (TypeError, ValueError) as exc:
            return wire.error_event(
                "invalid_result", f"the output or the new state is not JSON: {exc}", False
            )
    return wire.error_event(
        "invalid_result",
        "an actor function returns Result(output, state) or a tuple (output, state), "
        f"not {type(value).__name__}",
        False,
    )


def error_final(exc: BaseException) -> bytes:
    """The ``error`` frame of an exception raised by the actor function."""
    if isinstance(exc, ActorError):
        return wire.error_event(exc.code, exc.message, exc.retryable)
    logger.error("the actor function raised", exc_info=exc)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return wire.error_event("unhandled_exception", text[:MAX_MESSAGE_CHARS], False)


def call_sync(fn: ActorFunction, state: Any, input: Any, ctx: Context) -> bytes:
    """Run ``fn`` to its final event in this thread (an async ``fn`` gets its own loop)."""
    try:
        value = fn(state, input, ctx) if wants_context(fn) else fn(state, input)
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
    except Exception as exc:
        return error_final(exc)
    return final_event(value)


async def call_async(fn: ActorFunction, state: Any, input: Any, ctx: Context) -> bytes:
    """Await an async ``fn`` to its final event on the running loop."""
    try:
        value = fn(state, input, ctx) if wants_context(fn) else fn(state, input)
        if inspect.isawaitable(value):
            value = await value
    except Exception as exc:
        return error_final(exc)
    return final_event(value)


async def _await(value: Any) -> Any:
    return await value
