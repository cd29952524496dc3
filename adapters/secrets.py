"""Header values kept in AWS Secrets Manager, read with Powertools Parameters (cached, TTL).

A runner config may name a secret instead of holding a header value
(``{"authorization": {"secret_arn": "arn:aws:secretsmanager:..."}}``). The DynamoDB item keeps
only the ARN; the actor host and the pool manager read the secret's ``SecretString`` when they
build a start (``adapters.sse_client.StartTarget.from_config``), through Powertools'
``SecretsProvider``, which caches each value in the process for ``SECRET_TTL_S``: a warm Lambda
does not call Secrets Manager per start, and a rotated secret is picked up within the TTL.

boto3 finds moto through ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` (tests, ``runner-kit local``).
IAM: the template grants ``secretsmanager:GetSecretValue`` only on ARNs that start with the
``HeaderSecretArnPrefix`` parameter.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Final

from adapters.aws import error_code

SECRET_TTL_S: Final = 300
"""How long a read secret is reused before it is read again (Powertools ``max_age``)."""


class SecretUnavailableError(Exception):
    """A referenced secret could not be read; the message names the ARN and the AWS code only."""

    def __init__(self, header: str, arn: str, reason: str) -> None:
        super().__init__(f"header {header!r}: secret {arn} could not be read ({reason})")
        self.header = header
        self.arn = arn
        self.reason = reason


_PROVIDER: Any = None
_PROVIDER_LOCK: Final = threading.Lock()


def _provider() -> Any:
    """One ``SecretsProvider`` per process (its cache is what makes warm starts cheap)."""
    global _PROVIDER
    with _PROVIDER_LOCK:
        if _PROVIDER is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            _PROVIDER = SecretsProvider()
        return _PROVIDER


def reset_cache() -> None:
    """Forget every cached value and the client (tests; a new moto server)."""
    global _PROVIDER
    with _PROVIDER_LOCK:
        _PROVIDER = None


def _aws_code(exc: BaseException) -> str:
    current: BaseException | None = exc
    while current is not None:
        code = error_code(current)
        if code is not None:
            return code
        current = current.__cause__ or current.__context__
    return type(exc).__name__


def resolve_secrets(refs: Mapping[str, str], *, max_age_s: int | None = None) -> dict[str, str]:
    """``{header: value}`` for ``{header: secret ARN}``; raises ``SecretUnavailableError``.

    The value is the secret's ``SecretString`` without surrounding whitespace; a binary secret
    must be UTF-8 text.
    """
    values: dict[str, str] = {}
    max_age = SECRET_TTL_S if max_age_s is None else max_age_s
    for header, arn in refs.items():
        try:
            value = _provider().get(arn, max_age=max_age)
        except Exception as exc:  # Powertools wraps the ClientError in GetParameterError
            raise SecretUnavailableError(header, arn, _aws_code(exc)) from None
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise SecretUnavailableError(header, arn, "binary secret is not UTF-8") from None
        if not isinstance(value, str):
            raise SecretUnavailableError(header, arn, "not a string")
        # Surrounding whitespace is no part of an HTTP field value (RFC 9110 §5.5), and a secret
        # made from a file often ends with a newline.
        values[header] = value.strip(" \t\r\n")
    return values
