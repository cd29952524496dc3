"""Check a SigV4 ``Authorization`` header the way API Gateway does, with botocore's own signer."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<access_key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


def verify_sigv4(
    method: str, url: str, headers: Mapping[str, str], body: bytes, secret_key: str
) -> bool:
    """True if ``headers`` carry a valid signature of this request for ``secret_key``."""
    lower = {k.lower(): v for k, v in headers.items()}
    match = AUTHORIZATION.fullmatch(lower.get("authorization", ""))
    if match is None or "x-amz-date" not in lower:
        return False
    if lower["x-amz-date"][:8] != match["date"]:
        return False
    signed = match["signed"].split(";")
    if any(name not in lower for name in signed):
        return False
    request = AWSRequest(
        method=method, url=url, data=body, headers={name: lower[name] for name in signed}
    )
    request.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(
        ReadOnlyCredentials(match["access_key"], secret_key, lower.get("x-amz-security-token")),
        match["service"],
        match["region"],
    )
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    return hmac.compare_digest(expected, match["signature"])
