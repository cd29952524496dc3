"""``runner-kit`` command line: ``probe``, ``check``, ``local``, ``demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``runner-kit`` console script."""
    parser = argparse.ArgumentParser(prog="runner-kit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="scripted story on the embedded local stack")
    demo.add_argument("--verbose", action="store_true", help="show the handlers' logs too")
    local = sub.add_parser("local", help="moto + API + SQS poller + pool manager + dev runner")
    local.add_argument("--port", type=int, default=8080, help="API port on 127.0.0.1 (0: any)")
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
        from infra.local_stack import main as local_main

        return local_main(api_port=args.port, tick_s=args.tick)
    return 2


if __name__ == "__main__":
    sys.exit(main())
