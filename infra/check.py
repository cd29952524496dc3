"""``runner-kit check URL``: a conformance run of protocol v1 (docs/protocol.md), rule by rule.

Two requests, through the kit's SSRF guard (``adapters/runner/guard.py``): the kit's own probe,
as the pool manager sends it; then one real execution with a test input and state, read to its
end (not only to the final frame, as the kit does, so what comes after it shows). The rules are
in ``infra/check_rules.py``. Exit status: 0 conformant (an ``error`` frame is conformant: the
protocol was spoken right), 1 not, 2 bad usage. Header values are never printed, and are
replaced by ``***`` in anything the endpoint sent back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

from infra import probe as probe_cmd
from infra.check_rules import LINGER_S, Observation, Observer, RuleResult, evaluate

if TYPE_CHECKING:
    import httpx

    from adapters.runner.transport import StartTarget

KIT_INIT_TIMEOUT_S: Final = 30.0
"""The kit's default time to ``init`` (``INIT_TIMEOUT_S``); ``--timeout`` may lower it."""
TEST_STATE: Final = {"count": 41, "runner_kit_check": True}
TEST_INPUT: Final = {"hello": "from runner-kit check"}


# --- I/O: one execution, read to its end ------------------------------------------------------


async def record(
    target: StartTarget,
    body: dict[str, Any],
    *,
    timeout_s: float,
    init_timeout_s: float,
    linger_s: float = LINGER_S,
) -> Observation:
    """Send one execution as the kit does (guard, pinning, reserved headers) and record
    everything until the stream ends."""
    import httpx

    from adapters.clock import SYSTEM_CLOCK
    from adapters.runner.classify import classify_exception
    from adapters.runner.client import default_allow_loopback, pin_target
    from adapters.runner.transport import guarded_transport, http_client, start_request
    from core.exceptions import RunnerError

    observer = Observer()
    obs = observer.obs
    started = SYSTEM_CLOCK.monotonic()
    allow_loopback = default_allow_loopback()
    connect_s = min(5.0, timeout_s)
    try:
        pinned = await pin_target(target, allow_loopback=allow_loopback, timeout_s=connect_s)
    except RunnerError as exc:
        obs.error = exc.error
        return obs
    async with http_client(guarded_transport(allow_loopback=allow_loopback)) as http:
        timeout = httpx.Timeout(init_timeout_s, connect=connect_s)
        request = start_request(http, target, body, pinned, timeout)
        try:
            response = await http.send(request, stream=True)
        except Exception as exc:
            if isinstance(exc, httpx.TimeoutException):
                obs.timed_out = "init"
            obs.error = classify_exception(exc)
            return obs
        try:
            await _read(response, observer, started, timeout_s, init_timeout_s, linger_s)
        finally:
            await response.aclose()
    return obs


async def _read(
    response: httpx.Response,
    observer: Observer,
    started: float,
    timeout_s: float,
    init_timeout_s: float,
    linger_s: float,
) -> None:
    import httpx

    from adapters.clock import SYSTEM_CLOCK
    from adapters.runner.classify import check_answer, classify_exception
    from adapters.runner.transport import set_read_deadline

    obs = observer.obs
    obs.status = response.status_code
    obs.content_type = response.headers.get("content-type")
    obs.content_length = response.headers.get("content-length")
    if check_answer(response) != "ok":
        set_read_deadline(response, started + timeout_s)
        data = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) >= 64 * 1024:
                    break
        except Exception:  # the status is the finding; a broken error body changes nothing
            data += b"" if data else b"<body unreadable>"
        obs.body = bytes(data[:512]).decode("utf-8", "replace")
        return
    chunks = response.aiter_bytes()
    phase: Literal["init", "total", "linger"]
    while True:
        final_at = observer.final_at
        if final_at is not None:
            until, phase = started + final_at + linger_s, "linger"
        elif not observer.has_init:
            until, phase = started + init_timeout_s, "init"
        else:
            until, phase = started + timeout_s, "total"
        set_read_deadline(response, until)
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            observer.end(SYSTEM_CLOCK.monotonic() - started)
            return
        except Exception as exc:
            if isinstance(exc, httpx.TimeoutException | TimeoutError):
                obs.timed_out = phase
            else:
                obs.broken_at = SYSTEM_CLOCK.monotonic() - started
                obs.error = classify_exception(exc)
            return
        observer.feed(SYSTEM_CLOCK.monotonic() - started, chunk)
        if observer.hopeless:  # the kit stops reading here; the rules have what they need
            return


# --- CLI -----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``check`` options: those of ``probe``, plus the test input and state."""
    probe_cmd.add_arguments(parser)
    parser.add_argument("--input", metavar="JSON", help="the test message's input (JSON)")
    parser.add_argument("--state", metavar="JSON", help="the test actor's state (JSON)")


def _json_arg(parser: argparse.ArgumentParser, name: str, raw: str | None, default: Any) -> Any:
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:
        parser.error(f"--{name} must be JSON: {exc}")


def render(
    url: str, header_names: Sequence[str], rules: list[RuleResult], warns: list[RuleResult]
) -> str:
    """The human answer: one line per rule, hints under failures and warnings."""
    shown = f" with headers {', '.join(header_names)} (values hidden)" if header_names else ""
    lines = [f"runner-kit check {url.rstrip('/')}/start{shown}"]
    for rule in [*rules, *warns]:
        status = rule.status.upper() if rule.status == "fail" else rule.status
        lines.append(f"  {status:<4}  {rule.id:<19} {rule.detail}")
        if rule.hint and rule.status in ("fail", "warn"):
            lines.append(f"        hint: {rule.hint}")
    failed = [rule.id for rule in rules if rule.status == "fail"]
    lines.append(
        f"not conformant: {', '.join(failed)} failed" if failed else "conformant: protocol v1"
    )
    return "\n".join(lines)


def run(
    args: argparse.Namespace, parser: argparse.ArgumentParser, out: TextIO | None = None
) -> int:
    """Probe, then one execution; print the rules; return the exit status."""
    from adapters.runner.attempt import StartLimits
    from adapters.runner.client import RunnerClient, probe
    from core.protocol import start_body
    from core.redaction import redact_text

    out = out or sys.stdout
    target = probe_cmd.start_target(args, parser)  # the same URL, header and timeout checks
    state = _json_arg(parser, "state", args.state, TEST_STATE)
    test_input = _json_arg(parser, "input", args.input, TEST_INPUT)
    init_timeout_s = min(KIT_INIT_TIMEOUT_S, args.timeout)
    limits = StartLimits(
        connect_timeout_s=min(5.0, args.timeout),
        init_timeout_s=init_timeout_s,
        idle_timeout_s=args.timeout,
    )
    with RunnerClient(limits) as client:
        probed = probe(client, target)
    check_id = uuid.uuid4().hex[:12]
    body = start_body(f"check-{check_id}", f"check-{check_id}", state, test_input)
    obs = asyncio.run(record(target, body, timeout_s=args.timeout, init_timeout_s=init_timeout_s))
    rules, warns = evaluate(probed, obs, init_timeout_s=init_timeout_s)
    conformant = all(rule.status != "fail" for rule in rules)
    if args.json:
        answer = {
            "url": args.url,
            "conformant": conformant,
            "rules": [rule.to_json() for rule in rules],
            "warnings": [rule.to_json() for rule in warns],
            "execution": _execution_json(obs),
        }
        text = json.dumps(answer, ensure_ascii=False)
    else:
        text = render(args.url, list(target.headers), rules, warns)
    # Header values (and URL userinfo) in every form they travel in, as ``runner-kit probe``.
    print(redact_text(text, target.secrets), file=out)
    return 0 if conformant else 1


def _execution_json(obs: Observation) -> dict[str, Any]:
    from core.protocol import InitFrame, frame_json

    events = obs.message_events()
    init = events[0] if events and isinstance(events[0].frame, InitFrame) else None
    final = obs.final_index()
    last = events[final] if final is not None else None
    return {
        "status": obs.status,
        "runner_id": init.frame.runner_id
        if init is not None and isinstance(init.frame, InitFrame)
        else None,
        "time_to_init_s": init.at if init is not None else None,
        "final": json.loads(frame_json(last.frame))
        if last is not None and last.frame is not None
        else None,
        "events": len(obs.events),
        "reads": obs.reads,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infra.check URL ...``: the same as ``runner-kit check``."""
    return probe_cmd.main(
        argv, prog="runner-kit check", doc=__doc__, options=add_arguments, command=run
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
