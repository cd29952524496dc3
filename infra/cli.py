"""``runner-kit`` command line: ``probe``, ``check``, ``local``, ``demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``runner-kit`` console script."""
    parser = argparse.ArgumentParser(prog="runner-kit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"runner-kit {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    operator_parsers = _add_operator_commands(sub)
    demo = sub.add_parser("demo", help="scripted story on the embedded local stack")
    demo.add_argument("--verbose", action="store_true", help="show the handlers' logs too")
    local = sub.add_parser("local", help="moto + API + SQS poller + pool manager + dev runner")
    local.add_argument("--port", type=_port, default=8080, help="API port on 127.0.0.1 (0: any)")
    local.add_argument(
        "--dev-port",
        type=_port,
        default=None,
        help="dev runner port (default: the API port + 1; 0 when the API port is 0)",
    )
    local.add_argument("--tick", type=float, default=5.0, help="pool manager period (s)")
    from infra import probe as probe_cmd  # stdlib-only at import; httpx loads when it runs

    probe = sub.add_parser("probe", help="one /start against an endpoint, outcome classified")
    probe_cmd.add_arguments(probe)
    from infra import check as check_cmd

    check = sub.add_parser("check", help="protocol v1 conformance: a probe, then one execution")
    check_cmd.add_arguments(check)
    args = parser.parse_args(argv)
    if args.command == "probe":
        return probe_cmd.run(args, probe)
    if args.command == "check":
        return check_cmd.run(args, check)
    if args.command == "demo":
        from infra.demo import main as demo_main

        return demo_main(verbose=args.verbose)
    if args.command == "local":
        from infra.local.command import main as local_main

        return local_main(api_port=args.port, tick_s=args.tick, dev_port=args.dev_port)
    if args.command in operator_parsers:
        return _run_operator_command(args, operator_parsers[args.command])
    return 2


# ---------------------------------------------------------------------- operator commands


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("runner-kit")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {raw!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {port}")
    return port


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_operator_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> dict[str, argparse.ArgumentParser]:
    """``pools``, ``actors``, ``messages``, ``retry``, ``resume`` (see docs/operators.md)."""
    from infra.ops import MESSAGE_STATUSES

    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("which API")
    where.add_argument("--api", metavar="URL", help="the API's base URL (the local stack)")
    where.add_argument(
        "--stack",
        metavar="NAME",
        help="a deployed stack: its ApiUrl output, requests signed with SigV4",
    )
    where.add_argument("--region", help="AWS region (default: from the URL or the AWS config)")
    where.add_argument(
        "--sign", action="store_true", help="sign --api requests with SigV4 too (IAM auth)"
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument("--timeout", type=float, default=30.0, metavar="S", help="per request")
    parsers: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, help: str) -> argparse.ArgumentParser:
        parsers[name] = sub.add_parser(name, help=help, parents=[common])
        return parsers[name]

    pools = add("pools", "each pool of a namespace: health, active error, first/last seen")
    pools.add_argument("--namespace", required=True)
    actors = add("actors", "each actor of a namespace: status and error")
    actors.add_argument("--namespace", required=True)
    actors.add_argument("--page-size", type=_positive, default=100, help=argparse.SUPPRESS)
    messages = add("messages", "an actor's messages, newest first")
    messages.add_argument("actor_id")
    messages.add_argument("--status", choices=MESSAGE_STATUSES)
    messages.add_argument("--limit", type=_positive, default=100, help="at most N (100)")
    retry = add("retry", "queue a dead-lettered message again")
    retry.add_argument("actor_id")
    retry.add_argument("message_id")
    resume = add("resume", "resume a stopped actor")
    resume.add_argument("actor_id")
    return parsers


def _run_operator_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import re
    from urllib.parse import urlsplit

    from infra import ops

    if (args.api is None) == (args.stack is None):
        parser.error("give exactly one of --api URL (the local stack) or --stack NAME")
    if args.api is not None and "@" in urlsplit(args.api).netloc:
        parser.error("--api must not carry credentials (user:password@); use --stack or --sign")
    if args.api is not None and not re.match(r"^https?://[^\s/]+", args.api, re.IGNORECASE):
        parser.error(f"--api must be an absolute http:// or https:// URL, got {args.api!r}")
    if not args.timeout > 0:
        parser.error("--timeout must be positive")
    for name in ("namespace", "actor_id"):
        if getattr(args, name, None) == "":
            parser.error(f"{name} must not be empty")
    return ops.run(args, lambda: ops.connect(args), sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
