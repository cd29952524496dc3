"""The exceptions the kit raises: control flow carrying a typed error, and ``KitError``.

``RunnerError`` and ``RunnerNoResponseError`` carry a value of ``core.errors`` out of the runner
client; ``KitError`` subclasses are the kit's own runtime failures, each with a stable code from
``core.errors.RUNTIME_CODES``.
"""

from __future__ import annotations

from core.errors import STORE_FACETS, RunnerNoResponse, RunnerPoolError


class RunnerError(Exception):
    """Control flow: carries a typed ``RunnerPoolError``; raise it ``from`` the transport cause."""

    def __init__(self, error: RunnerPoolError) -> None:
        super().__init__(error.code)
        self.error = error

    @property
    def code(self) -> str:
        return self.error.code

    def __str__(self) -> str:
        return f"{self.error.code}: {self.error.summary}"


class RunnerNoResponseError(Exception):
    """Control flow: the runner sent ``init`` and then went silent or ended without ``done``."""

    def __init__(self, runner_id: str, detail: str = "") -> None:
        super().__init__(runner_id)
        self.reason = RunnerNoResponse(runner_id=runner_id)
        self.detail = detail

    @property
    def code(self) -> str:
        return self.reason.code

    def __str__(self) -> str:
        suffix = f" ({self.detail})" if self.detail else ""
        return f"runner_no_response: {self.reason.summary}{suffix}"


class KitError(Exception):
    """The kit's own runtime failure, with a stable ``code`` (see ``RUNTIME_CODES``)."""

    code: str = "kit_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class DurableStoreRequiredError(KitError):
    """An in-memory store was wired into code running inside Lambda."""

    def __init__(self, facet: str) -> None:
        if facet not in STORE_FACETS:
            raise ValueError(f"unknown store facet {facet!r}")
        self.facet = facet
        self.code = f"durable_store_required:{facet}"
        super().__init__(
            f"the {facet} is in-memory but this code runs in Lambda; "
            "wire the DynamoDB store (state would vanish between invocations)"
        )


class MissingExecutionIdError(KitError):
    """An execution arrived without the persisted ``message_id`` that anchors its idempotency."""

    code = "missing_execution_id"


class ExecutionBusyError(KitError):
    """Another execution holds the actor; this one must wait and retry."""

    code = "execution_busy"


class ExecutionLeaseLostError(KitError):
    """This execution lost its lease on the actor; it must not commit."""

    code = "execution_lease_lost"


class StoreCommitFailedError(KitError):
    """The state and result could not be committed."""

    code = "store_commit_failed"


class CommitRefusedError(StoreCommitFailedError):
    """DynamoDB refused the commit itself (``ValidationException``): final for the message."""

    def __init__(self, message: str, aws_code: str) -> None:
        super().__init__(message)
        self.aws_code = aws_code


class StoreReadFailedError(KitError):
    """A store could not be read (the AWS error code is in the message)."""

    code = "store_read_failed"
