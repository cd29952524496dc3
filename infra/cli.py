"""``runner-kit`` command line: ``probe``, ``local``, ``demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``runner-kit`` console script."""
    parser = argparse.ArgumentParser(prog="runner-kit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="scripted story on the embedded local stack")
    from infra import probe as probe_cmd  # stdlib-only at import; httpx loads when it runs

    probe = sub.add_parser("probe", help="one /start against an endpoint, outcome classified")
    probe_cmd.add_arguments(probe)
    args = parser.parse_args(argv)
    if args.command == "probe":
        return probe_cmd.run(args, probe)
    if args.command == "demo":
        print("runner-kit demo: not built yet (issue 7); run `make test` for what exists.")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
