"""Cut free text to a byte budget without splitting a UTF-8 character, and never raise."""

from __future__ import annotations

from typing import Final

MAX_ERROR_BYTES: Final = 512
"""Bodies, raw payloads and messages inside errors are cut to this many UTF-8 bytes."""


def truncate_utf8(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """Return the longest prefix of ``text`` whose UTF-8 encoding fits in ``limit`` bytes.

    Lone surrogates (which UTF-8 cannot encode) become U+FFFD first, so the result is always
    valid UTF-8.
    """
    if limit <= 0:
        return ""
    if len(text) * 4 <= limit:  # fast path: even 4-byte characters fit
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
        return text
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        encoded = text.encode("utf-8", "replace")  # lone surrogate -> '?'
    if len(encoded) <= limit:
        return encoded.decode("utf-8")
    # A prefix of valid UTF-8 can only be broken at its very end; "ignore" drops that stub.
    return encoded[:limit].decode("utf-8", "ignore")
