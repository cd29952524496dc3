"""The operator commands' work: ``pools``, ``actors``, ``messages``, ``retry``, ``resume``.

Each command makes its API calls through ``infra.api_client.ApiClient`` and prints a human table
(the default) or JSON (``--json``). Exit status: 0 ok, 1 the API answered with an error (its
``code`` and ``message`` are printed) or could not be reached, 2 bad usage (argparse).

Header values never reach the output: runner config views arrive redacted (``***``) and are
redacted again here; tables do not show headers at all, and a URL is shown without its query
and with its userinfo as ``***``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO, get_args
from urllib.parse import quote, urlsplit, urlunsplit

from core.models import MessageStatus
from core.redaction import without_userinfo
from infra.api_client import ApiAnswerError, ApiClient, OpsError

MESSAGE_STATUSES: Final = get_args(MessageStatus)
REDACTED: Final = "***"
ERROR_WIDTH: Final = 60
MESSAGES_PAGE: Final = 50
ACTORS_PAGE: Final = 100


# ------------------------------------------------------------------------------------ the calls


def _seg(value: str) -> str:
    """One path segment, percent-encoded (an id can never add a path level)."""
    return quote(value, safe="-_.~:")


def list_pools(client: ApiClient, namespace: str) -> list[dict[str, Any]]:
    """The namespace's runner configs, each with its ``pool_error`` while it has one."""
    answer = client.get("/runner-configs", {"namespace": namespace})
    configs = answer.get("runner_configs")
    return [redact_config(c) for c in configs] if isinstance(configs, list) else []


def list_actors(
    client: ApiClient, namespace: str, *, page_size: int = ACTORS_PAGE
) -> list[dict[str, Any]]:
    """Every actor of the namespace (all pages)."""
    params: dict[str, str | int | None] = {"namespace": namespace, "limit": page_size}
    return list(client.pages("/actors", "actors", params, limit=None))


def list_messages(
    client: ApiClient, actor_id: str, *, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The actor's messages, newest first, at most ``limit`` (following ``next_cursor``)."""
    params: dict[str, str | int | None] = {"status": status, "limit": min(limit, MESSAGES_PAGE)}
    return list(client.pages(f"/actors/{_seg(actor_id)}/messages", "messages", params, limit=limit))


def retry_message(client: ApiClient, actor_id: str, message_id: str) -> dict[str, Any]:
    """Queue a dead-lettered message again: its view (status ``pending``)."""
    answer: dict[str, Any] = client.post(
        f"/actors/{_seg(actor_id)}/messages/{_seg(message_id)}/retry"
    )
    return answer


def resume_actor(client: ApiClient, actor_id: str) -> dict[str, Any]:
    """Resume a stopped actor: its view (status ``active``)."""
    answer: dict[str, Any] = client.post(f"/actors/{_seg(actor_id)}/resume")
    return answer


def redact_config(config: Any) -> Any:
    """A runner config view with every header value ``***`` (whatever the API sent)."""
    if isinstance(config, dict) and isinstance(config.get("headers"), dict):
        return {**config, "headers": dict.fromkeys(config["headers"], REDACTED)}
    return config


# ------------------------------------------------------------------------------------ rendering


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart; no trailing spaces."""
    body = [list(header), *(list(r) for r in rows)]
    widths = [max(len(row[i]) for row in body) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in body
    )


def when(value: Any) -> str:
    """An API time as ``YYYY-MM-DD HH:MM:SSZ`` (UTC); ``-`` when absent."""
    if not isinstance(value, str) or not value:
        return "-"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%SZ")


def error_line(error: Any, width: int = ERROR_WIDTH) -> str:
    """``code: summary`` of any typed error JSON, cut to ``width``; ``-`` when there is none."""
    if not isinstance(error, dict) or not error.get("code"):
        return "-"
    from core.errors import (
        POOL_ERROR_CODES,
        ErrorDecodeError,
        decode_actor_error,
        decode_pool_error,
    )

    code = str(error["code"])
    try:
        decoded = decode_pool_error(error) if code in POOL_ERROR_CODES else None
        summary = (decoded or decode_actor_error(error)).summary
    except ErrorDecodeError:
        summary = code
    if code == "pool_error" and isinstance(error.get("error"), dict):
        summary = error_line(error["error"], width=10_000)  # the pool's error is the news
    line = summary if summary.startswith(code) else f"{code}: {summary}"
    line = " ".join(line.split())  # one line, whatever the endpoint's body held
    return line if len(line) <= width else line[: width - 3] + "..."


def _url(url: Any) -> str:
    """``url`` without its query and fragment, and its userinfo shown as ``***``."""
    if not isinstance(url, str):
        return "-"
    parts = urlsplit(url)
    return without_userinfo(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))


def health(config: Mapping[str, Any]) -> str:
    """``ok``, ``failing`` (with successes so far toward clearing) or ``stale``."""
    status = config.get("pool_error")
    if not isinstance(status, dict):
        return "ok"
    if status.get("stale"):
        return "stale"
    successes = status.get("consecutive_successes")
    return f"failing ({successes} ok)" if isinstance(successes, int) and successes else "failing"


def render_pools(configs: Sequence[Mapping[str, Any]], namespace: str) -> str:
    """The ``pools`` table."""
    if not configs:
        return f"no runner configs in namespace {namespace}"
    rows = []
    for c in configs:
        pool_error = c.get("pool_error")
        status: Mapping[str, Any] = pool_error if isinstance(pool_error, dict) else {}
        rows.append(
            [
                f"{c.get('namespace')}/{c.get('runner_name')}",
                health(c),
                error_line(status.get("error")),
                when(status.get("first_seen")),
                when(status.get("last_seen")),
                str(status.get("count", "-")),
                _url(c.get("url")),
            ]
        )
    header = ["POOL", "HEALTH", "ERROR", "FIRST SEEN", "LAST SEEN", "COUNT", "URL"]
    return table(header, rows)


def render_actors(actors: Sequence[Mapping[str, Any]], namespace: str) -> str:
    """The ``actors`` table."""
    if not actors:
        return f"no actors in namespace {namespace}"
    rows = [
        [
            str(a.get("actor_id")),
            f"{a.get('namespace')}/{a.get('runner_name')}",
            str(a.get("status", "-")),
            error_line(a.get("error")),
            when(a.get("updated_at")),
        ]
        for a in actors
    ]
    return table(["ACTOR", "POOL", "STATUS", "ERROR", "UPDATED"], rows)


def render_messages(messages: Sequence[Mapping[str, Any]], actor_id: str) -> str:
    """The ``messages`` table (newest first, as the API lists them)."""
    if not messages:
        return f"no messages for actor {actor_id}"
    rows = [
        [
            str(m.get("message_id")),
            str(m.get("status", "-")),
            str(m.get("attempts", "-")),
            str(m.get("disposition") or "-"),
            error_line(m.get("error")),
            when(m.get("created_at")),
            when(m.get("finished_at")),
        ]
        for m in messages
    ]
    header = ["MESSAGE", "STATUS", "ATTEMPTS", "DISPOSITION", "ERROR", "CREATED", "FINISHED"]
    return table(header, rows)


def render_retry(message: Mapping[str, Any]) -> str:
    """What ``retry`` did."""
    return (
        f"message {message.get('message_id')} of actor {message.get('actor_id')} queued again: "
        f"status {message.get('status')}, attempts {message.get('attempts', 0)}"
    )


def render_resume(actor: Mapping[str, Any]) -> str:
    """What ``resume`` did."""
    return f"actor {actor.get('actor_id')} resumed: status {actor.get('status')}"


def render_error(error: OpsError) -> str:
    """One line for stderr: the code, the HTTP status when there was one, the message."""
    if isinstance(error, ApiAnswerError):
        return f"error: {error.code} (HTTP {error.status}): {error.message}"
    return f"error: {error.code}: {error.message}"


# ------------------------------------------------------------------------------------ the runner


def connect(args: argparse.Namespace) -> ApiClient:
    """The client for ``--api URL`` (signed with ``--sign``) or ``--stack NAME`` (signed)."""
    from infra.api_client import aws_session, region_of, sigv4_auth, stack_api_url

    if args.stack is not None:
        session = aws_session(args.region)
        url = stack_api_url(session, args.stack, args.region)
        auth = sigv4_auth(session, args.region or region_of(url))
        return ApiClient(url, auth=auth, timeout_s=args.timeout)
    signer = None
    if args.sign:
        signer = sigv4_auth(aws_session(args.region), args.region or region_of(args.api))
    return ApiClient(args.api, auth=signer, timeout_s=args.timeout)


def _work(args: argparse.Namespace, client: ApiClient) -> tuple[Any, str]:
    """(JSON answer, human answer) of one command."""
    if args.command == "pools":
        configs = list_pools(client, args.namespace)
        return {"runner_configs": configs}, render_pools(configs, args.namespace)
    if args.command == "actors":
        actors = list_actors(client, args.namespace, page_size=args.page_size)
        return {"actors": actors}, render_actors(actors, args.namespace)
    if args.command == "messages":
        messages = list_messages(client, args.actor_id, status=args.status, limit=args.limit)
        return {"messages": messages}, render_messages(messages, args.actor_id)
    if args.command == "retry":
        message = retry_message(client, args.actor_id, args.message_id)
        return message, render_retry(message)
    if args.command == "resume":
        actor = resume_actor(client, args.actor_id)
        return actor, render_resume(actor)
    raise ValueError(f"not an operator command: {args.command}")  # pragma: no cover


def run(
    args: argparse.Namespace,
    connect: Callable[[], ApiClient],
    out: TextIO,
    err: TextIO,
) -> int:
    """Run one operator command; print its answer (or its error); the exit status."""
    try:
        with contextlib.closing(connect()) as client:
            answer, text = _work(args, client)
    except OpsError as exc:
        if args.json:
            print(json.dumps({"error": exc.to_json()}, ensure_ascii=False), file=out)
        print(render_error(exc), file=err)
        return 1
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2), file=out)
    else:
        print(text, file=out)
    return 0
