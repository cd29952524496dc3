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
    args = parser.parse_args(argv)
    if args.command == "demo":
        print("runner-kit demo: not built yet (issue 7); run `make test` for what exists.")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
