"""A client for the runner-kit API: the local stack over plain HTTP, a deployed stack with SigV4.

- ``ApiClient(base_url, auth=...)``: ``get``/``post`` return the JSON object of a 2xx answer and
  raise ``ApiAnswerError`` (status, ``code``, ``message``, ``metadata``) for an error answer;
  ``pages`` follows ``next_cursor``;
- ``SigV4Auth``: an ``httpx.Auth`` that signs every request with botocore's own signer (service
  ``execute-api``), credentials from the standard AWS chain, as the IAM-protected API wants;
- ``stack_api_url``: the API URL from a deployed stack's CloudFormation output ``ApiUrl``.

Errors (all ``OpsError``, each with a stable ``code``):
    ApiAnswerError     the API answered non-2xx (its own ``code``, or API Gateway's error type)
    ApiUnreachable     ``api_unreachable``: no answer (refused, DNS, TLS, timeout)
    InvalidAnswer      ``invalid_answer``: a 2xx answer that is not a JSON object
    StackLookupError   ``stack_not_found``, ``stack_output_missing``, ``stack_lookup_failed``,
                       ``no_credentials``, ``no_region``

Header values (``Authorization``, session tokens, runner config headers) never appear in an
error, a log line or a printed answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any, Final
from urllib.parse import quote

import httpx

API_URL_OUTPUT: Final = "ApiUrl"
"""The template's output that holds the API's base URL (``template.yaml`` ``Outputs``)."""
SERVICE: Final = "execute-api"
_SIGNED: Final = ("host", "content-type")
"""Headers we sign besides botocore's own ``x-amz-*``: what API Gateway sees unchanged."""
_REGION_IN_HOST: Final = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


class OpsError(Exception):
    """Base: an operator command could not get its answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class ApiAnswerError(OpsError):
    """The API answered with an error (non-2xx)."""

    def __init__(
        self, status: int, code: str, message: str, metadata: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(code, message)
        self.status = status
        self.metadata = dict(metadata or {})

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "metadata": self.metadata,
        }


class ApiUnreachable(OpsError):
    """No answer from the API (refused, DNS, TLS, timeout)."""


class InvalidAnswer(OpsError):
    """A 2xx answer that is not a JSON object."""


class StackLookupError(OpsError):
    """The deployed stack, its API URL output, credentials or region could not be found."""


# ------------------------------------------------------------------------------------ signing


class SigV4Auth(httpx.Auth):
    """Sign each request with SigV4 (botocore's signer) for ``execute-api`` in ``region``.

    ``credentials`` returns botocore credentials (``access_key``, ``secret_key``, ``token``);
    it is called per request so refreshable credentials stay fresh.
    """

    requires_request_body = True

    def __init__(self, credentials: Callable[[], Any], region: str, service: str = SERVICE) -> None:
        self._credentials = credentials
        self.region = region
        self.service = service

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        from botocore.auth import SigV4Auth as BotocoreSigV4Auth
        from botocore.awsrequest import AWSRequest

        # Only headers that reach API Gateway unchanged are signed (not user-agent, accept-
        # encoding or connection, which proxies may rewrite).
        signed = {name: request.headers[name] for name in _SIGNED if name in request.headers}
        aws = AWSRequest(
            method=request.method, url=str(request.url), data=request.content, headers=signed
        )
        BotocoreSigV4Auth(self._credentials(), self.service, self.region).add_auth(aws)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in aws.headers:
                request.headers[name] = aws.headers[name]
        yield request


def region_of(api_url: str) -> str | None:
    """The region in an ``https://<id>.execute-api.<region>.amazonaws.com/...`` URL."""
    try:
        host = httpx.URL(api_url).host
    except httpx.InvalidURL:
        return None
    match = _REGION_IN_HOST.search(host)
    return match.group(1) if match else None


def aws_session(region: str | None = None) -> Any:
    """A botocore session on the standard credential chain (env, profile, SSO, IMDS ...)."""
    import botocore.session

    session = botocore.session.get_session()
    if region:
        session.set_config_variable("region", region)
    return session


def sigv4_auth(session: Any, region: str | None) -> SigV4Auth:
    """``SigV4Auth`` from a botocore session; ``no_credentials`` / ``no_region`` when missing."""
    region = region or session.get_config_variable("region")
    if not region:
        raise StackLookupError(
            "no_region", "no AWS region: pass --region or set AWS_REGION / a profile region"
        )
    credentials = session.get_credentials()
    if credentials is None:
        raise StackLookupError(
            "no_credentials",
            "no AWS credentials found in the standard chain (environment, ~/.aws, SSO, role)",
        )
    return SigV4Auth(credentials.get_frozen_credentials, region)


def stack_api_url(session: Any, stack_name: str, region: str | None = None) -> str:
    """The API URL of a deployed stack: its CloudFormation output ``ApiUrl``."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        client = session.create_client("cloudformation", region_name=region)
        stacks = client.describe_stacks(StackName=stack_name).get("Stacks", [])
    except NoCredentialsError:
        raise StackLookupError(
            "no_credentials", "no AWS credentials found in the standard chain"
        ) from None
    except NoRegionError:
        raise StackLookupError(
            "no_region", "no AWS region: pass --region or set AWS_REGION / a profile region"
        ) from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "ValidationError":  # CloudFormation's code for "does not exist"
            raise StackLookupError(
                "stack_not_found", f"no stack named {stack_name!r} in this account and region"
            ) from None
        raise StackLookupError(
            "stack_lookup_failed", f"DescribeStacks {stack_name!r} failed: {code}"
        ) from None
    except BotoCoreError as exc:
        raise StackLookupError(
            "stack_lookup_failed", f"DescribeStacks failed: {type(exc).__name__}"
        ) from None
    if not stacks:
        raise StackLookupError("stack_not_found", f"no stack named {stack_name!r}")
    outputs = {o.get("OutputKey"): o.get("OutputValue") for o in stacks[0].get("Outputs", [])}
    url = outputs.get(API_URL_OUTPUT)
    if not isinstance(url, str) or not url:
        raise StackLookupError(
            "stack_output_missing", f"stack {stack_name!r} has no output {API_URL_OUTPUT}"
        )
    return url


# ------------------------------------------------------------------------------------- client


def query(params: Mapping[str, str | int | None]) -> str:
    """``?k=v&...`` with SigV4's encoding (every byte but ``A-Za-z0-9-_.~``); ``None`` dropped."""
    parts = [
        f"{quote(k, safe='-_.~')}={quote(str(v), safe='-_.~')}"
        for k, v in params.items()
        if v is not None
    ]
    return "?" + "&".join(parts) if parts else ""


class ApiClient:
    """The API over HTTP; answers decoded, error answers raised as ``ApiAnswerError``."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            auth=auth,
            timeout=timeout_s,
            transport=transport,
            follow_redirects=False,
            headers={"accept": "application/json"},
        )

    def close(self) -> None:
        """Close the connection pool (``with contextlib.closing(client):``)."""
        self._http.close()

    def get(self, path: str, params: Mapping[str, str | int | None] | None = None) -> Any:
        """GET ``path`` (with ``params``): the answer's JSON object."""
        return self._send("GET", path + query(params or {}), None)

    def post(self, path: str, body: Any = None) -> Any:
        """POST ``path`` (a JSON body when given): the answer's JSON object."""
        return self._send("POST", path, body)

    def pages(
        self, path: str, key: str, params: Mapping[str, str | int | None], *, limit: int | None
    ) -> Iterator[dict[str, Any]]:
        """Every item under ``key`` across pages (``next_cursor``), at most ``limit``."""
        cursor: str | None = None
        count = 0
        while True:
            answer = self.get(path, {**params, "cursor": cursor})
            items = answer.get(key)
            if not isinstance(items, list):
                raise InvalidAnswer("invalid_answer", f"GET {path}: no list under {key!r}")
            for item in items:
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return
            next_cursor = answer.get("next_cursor")
            if not isinstance(next_cursor, str) or not next_cursor or not items:
                return
            if next_cursor == cursor:  # a server bug must not loop the command forever
                raise InvalidAnswer("invalid_answer", f"GET {path}: next_cursor did not move")
            cursor = next_cursor

    def _send(self, method: str, path: str, body: Any) -> Any:
        url = self.base_url + path
        content = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if content is not None else {}
        try:
            response = self._http.request(method, url, content=content, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # The exception's text names the failure (refused, timeout ...), never headers.
            raise ApiUnreachable(
                "api_unreachable", f"{method} {url}: {type(exc).__name__}: {exc}"
            ) from exc
        return _answer(method, url, response)


def _answer(method: str, url: str, response: httpx.Response) -> Any:
    try:
        data = response.json() if response.content else None
    except ValueError:
        data = None
    if response.is_success:
        if not isinstance(data, dict):
            raise InvalidAnswer(
                "invalid_answer", f"{method} {url}: HTTP {response.status_code}, not a JSON object"
            )
        return data
    body = data if isinstance(data, dict) else {}
    code = body.get("code")
    message = body.get("message", body.get("Message"))
    metadata = body.get("metadata")
    if not isinstance(code, str) or not code:
        # Not our error body: API Gateway's own answers (403 for a bad signature ...) name
        # their type in a header; otherwise the status is all we know.
        error_type = response.headers.get("x-amzn-errortype", "").split(":", 1)[0]
        code = error_type or f"http_{response.status_code}"
    if not isinstance(message, str):
        message = response.reason_phrase or "error"
    return_metadata = metadata if isinstance(metadata, dict) else {}
    raise ApiAnswerError(response.status_code, code, message, return_metadata)
