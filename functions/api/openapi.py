"""The API's OpenAPI document, generated from the resolver's routes and models.

``python -m functions.api.openapi`` rewrites ``docs/openapi.json``; ``--check`` exits 1 if the
committed file is stale (a test runs the same comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

OPENAPI_PATH: Final = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

DESCRIPTION: Final = (
    "Runner configs, actors and messages of runner-kit. Every error answer is "
    '{"group","code","message","metadata"} with a stable code (docs/errors.md, "API errors"). '
    "POST /actors/{actor_id}/messages?wait=true is the fail-fast gateway (docs/api.md)."
)


def render() -> str:
    """The document as committed: stable key order, two-space indent, trailing newline."""
    from functions.api.app import TITLE, VERSION, app

    raw = app.get_openapi_json_schema(title=TITLE, version=VERSION, description=DESCRIPTION)
    document = json.loads(raw)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            # Powertools gives every answer the route's return type; a 204 has no body at all.
            no_content = operation.get("responses", {}).get("204")
            if isinstance(no_content, dict):
                no_content.pop("content", None)
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or ``--check``) ``docs/openapi.json``."""
    parser = argparse.ArgumentParser(prog="python -m functions.api.openapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    parser.add_argument("--out", type=Path, default=OPENAPI_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale; run: python -m functions.api.openapi", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
