"""``runner-kit probe URL``: one probe start against a real endpoint, the outcome classified.

What a user runs when their endpoint misbehaves. Exit status: 0 the runner started (its
``init`` frame arrived), 1 a classified failure, 2 bad usage. Header values are never printed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from adapters.runner.transport import StartTarget
    from core.errors import RunnerPoolError
    from core.ports import ProbeResult

_HINTS: dict[str, str] = {
    "serverless_http_error": "the endpoint answered, but not 200; its own logs say why",
    "serverless_stream_ended_early": "the stream ended before the init frame; the endpoint "
    "must send init first, before any slow work",
    "serverless_invalid_base64": "each message event's data must be standard base64 of the "
    "JSON frame (see docs/protocol.md)",
    "serverless_invalid_payload": 'the first frame must be {"v":1,"type":"init","runner_id":...}'
    " (see docs/protocol.md)",
    "internal_error": "runner-kit itself failed; please report it",
}
_REASON_HINTS: dict[str, str] = {
    "connect": "nothing accepted the connection: is the endpoint up, and the port right?",
    "dns": "the host name does not resolve",
    "tls": "the TLS handshake failed: check the certificate and the host name",
    "timeout": "the endpoint was too slow; init must come within the init timeout",
    "read": "the connection broke while reading the stream (reset, or cut mid-chunk)",
    "protocol": "the answer was not valid HTTP: check what sits in front of the endpoint",
    "content_type": "answer /start with content-type: text/event-stream",
    "blocked_address": "private and loopback endpoints need --allow-private (a runner config's "
    "allow_private_network); link-local and metadata addresses are never allowed",
    "too_large": "one event exceeded the size cap; send large outputs in several frames",
    "redirect": "redirects are not followed: configure the final URL",
    "invalid_url": "the URL must be an absolute http:// or https:// URL",
}
_STATUS_HINTS: dict[int, str] = {
    401: "the endpoint wants credentials: pass them with --header",
    403: "the endpoint refused the credentials: check --header values",
    404: "runner-kit appends /start to the URL: configure the base URL",
    405: "the endpoint must accept POST on /start",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``probe`` options (shared by ``runner-kit probe`` and ``python -m infra.probe``)."""
    parser.add_argument("url", help="the runner endpoint's base URL (/start is appended)")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="K:V",
        help="a header to send (repeatable); values are never printed",
    )
    parser.add_argument(
        "--allow-private",
        action="store_true",
        help="allow private and loopback addresses (never link-local or metadata)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="give up after S seconds"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _headers(parser: argparse.ArgumentParser, raw: Sequence[str]) -> dict[str, str]:
    from core.models import HEADER_PROBLEMS, header_problem

    headers: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            parser.error(f"--header wants NAME:VALUE with a valid header name, got {name!r}")
        value = value.strip(" \t")  # the optional whitespace around a field value
        problem = header_problem(name, value)
        if problem is not None:  # names the header, never the value
            parser.error(f"header {name!r} {HEADER_PROBLEMS[problem]}")
        headers[name] = value
    return headers


def shown_url(url: str) -> str:
    """``url`` without its userinfo (credentials are never printed)."""
    from core.redaction import without_userinfo

    return without_userinfo(url)


def start_target(args: argparse.Namespace, parser: argparse.ArgumentParser) -> StartTarget:
    """The ``StartTarget`` the command line names (URL, header and timeout checked)."""
    from adapters.runner.transport import StartTarget
    from core.models import PoolKey, url_problem

    problem = url_problem(args.url)
    if problem is not None:
        parser.error(f"URL {shown_url(args.url)!r} {problem}")
    if not args.timeout > 0:
        parser.error("--timeout must be positive")
    return StartTarget(
        url=args.url,
        headers=_headers(parser, args.header),
        pool=PoolKey(namespace="probe", runner_name="cli"),
        total_slots=1,
        request_lifespan=max(1, min(900, round(args.timeout))),
        allow_private_network=args.allow_private,
    )


def hint(error: RunnerPoolError) -> str:
    """A next step for the person whose endpoint failed this way."""
    data = error.to_json()
    if data.get("code") == "serverless_http_error":
        status = data.get("status_code")
        if isinstance(status, int) and status in _STATUS_HINTS:
            return _STATUS_HINTS[status]
    if data.get("code") == "serverless_connection_error":
        return _REASON_HINTS.get(str(data.get("reason")), "a transport failure")
    return _HINTS.get(str(data.get("code")), "see docs/protocol.md")


def render(result: ProbeResult, url: str, header_names: Sequence[str]) -> str:
    """The human answer."""
    sent = f"POST {shown_url(url).rstrip('/')}/start" + (
        f" with headers {', '.join(header_names)} (values hidden)" if header_names else ""
    )
    if result.ok:
        took = result.time_to_init_s or 0.0
        return f"ok: runner {result.runner_id} started; init after {took:.3f} s\n  {sent}"
    assert result.error is not None
    lines = [
        f"failed: {result.error.code}",
        f"  {result.error.summary}",
        f"  hint: {hint(result.error)}",
        f"  {sent}",
    ]
    return "\n".join(lines)


def as_json(result: ProbeResult, url: str) -> dict[str, Any]:
    """The machine answer (``--json``)."""
    return {
        "ok": result.ok,
        "url": shown_url(url),
        "runner_id": result.runner_id,
        "time_to_init_s": result.time_to_init_s,
        "error": result.error.to_json() if result.error is not None else None,
    }


def run(
    args: argparse.Namespace, parser: argparse.ArgumentParser, out: TextIO | None = None
) -> int:
    """Probe once; print the outcome; return the exit status."""
    from adapters.runner.attempt import StartLimits
    from adapters.runner.client import RunnerClient, probe
    from core.redaction import redact_text

    out = out or sys.stdout
    target = start_target(args, parser)
    limits = StartLimits(
        connect_timeout_s=min(5.0, args.timeout),
        init_timeout_s=args.timeout,
        idle_timeout_s=args.timeout,
    )
    with RunnerClient(limits) as client:
        # A probe ends at init, so the init timeout is the whole budget (plus connect).
        result = probe(client, target)
    if args.json:
        text = json.dumps(as_json(result, args.url), ensure_ascii=False)
    else:
        text = render(result, args.url, list(target.headers))
    # The error was redacted where it was made (adapters.runner.client); this is the backstop.
    print(redact_text(text, target.secrets), file=out)
    return 0 if result.ok else 1


Command = Callable[[argparse.Namespace, argparse.ArgumentParser], int]


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "runner-kit probe",
    doc: str | None = __doc__,
    options: Callable[[argparse.ArgumentParser], None] = add_arguments,
    command: Command = run,
) -> int:
    """``python -m infra.probe URL ...``: the same as ``runner-kit probe`` (and, with the other
    command's parts, ``python -m infra.check``)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    options(parser)
    return command(parser.parse_args(argv), parser)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
