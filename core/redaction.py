"""Replace a pool's secrets by ``***`` in anything an endpoint or a transport sends back.

The secrets are the runner config's header values and the URL's userinfo. An endpoint may echo
them (``401 rejected token Bearer sk-...``), and a transport error may quote them
(``Illegal header value b'Bearer sk-... '``): every error body, message and raw payload is
redacted with ``redact_text`` before it is stored, logged or shown.

Each secret is matched in the forms it travels in: as is, stripped, each credential word of it
(``sk-...`` of ``Bearer sk-...``), Python ``repr`` of the text and of its UTF-8 bytes, JSON string
escaping, and percent-encoding. Errors are cut to 512 bytes, so a text that ends with the start
of a secret loses that end too. Values shorter than ``MIN_SECRET_CHARS`` are not secrets worth
the name (``x-team: a``) and would garble every message: they are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, unquote, urlsplit

from pydantic import JsonValue

from core.errors import RunnerPoolError, decode_pool_error
from core.models import REDACTED

MIN_SECRET_CHARS: Final = 4
MIN_WORD_CHARS: Final = 8
"""A word of a multi-word value (the credential after ``Bearer``) is a secret form from here."""


def _forms_of(value: str) -> set[str]:
    forms = {value, value.strip()}
    forms.update(word for word in value.split() if len(word) >= MIN_WORD_CHARS)
    for text in list(forms):
        forms.add(repr(text)[1:-1])
        forms.add(repr(text.encode("utf-8", "backslashreplace"))[2:-1])
        forms.add(json.dumps(text)[1:-1])
        forms.add(json.dumps(text, ensure_ascii=False)[1:-1])
        forms.add(quote(text, safe=""))
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


def url_secrets(url: str) -> list[str]:
    """The userinfo of ``url`` (whole, and its user and password), decoded and as written."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        netloc = url.partition("://")[2].partition("/")[0]
    userinfo, at, _ = netloc.rpartition("@")
    if not at or not userinfo:
        return []
    user, _, password = userinfo.partition(":")
    parts = [userinfo, user, password]
    return [p for p in {*parts, *(unquote(p) for p in parts)} if p]


def without_userinfo(url: str) -> str:
    """``url`` with its userinfo shown as ``***`` (what may be printed or logged)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        # Not an absolute URL (``http:/u:pw@h``, ``u:pw@h``): what precedes an ``@`` may still
        # be credentials, and such a text is only ever shown in an error naming it.
        return f"{REDACTED}@{url.rpartition('@')[2]}" if "@" in url else url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:cut]
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{rest[cut:]}"


def secret_forms(values: Iterable[str]) -> tuple[str, ...]:
    """Every form of ``values`` to redact, longest first (so no form leaves part of another)."""
    forms: set[str] = set()
    for value in values:
        if len(value.strip()) >= MIN_SECRET_CHARS:
            forms.update(_forms_of(value))
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


def redact_text(text: str, forms: tuple[str, ...]) -> str:
    """``text`` with every form replaced by ``***``, and a cut-off secret start at its end."""
    if not forms or not text:
        return text
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    for form in forms:  # a text cut to a byte budget may end inside a secret
        for size in range(min(len(form) - 1, len(text)), MIN_SECRET_CHARS - 1, -1):
            if text.endswith(form[:size]):
                return text[:-size] + REDACTED
    return text


def contains_secret(text: str, forms: tuple[str, ...]) -> bool:
    """Whether any form occurs in ``text``."""
    return any(form in text for form in forms)


def redact_json(value: JsonValue, forms: tuple[str, ...]) -> JsonValue:
    """Every string in ``value`` (keys too) redacted."""
    if isinstance(value, str):
        return redact_text(value, forms)
    if isinstance(value, list):
        return [redact_json(v, forms) for v in value]
    if isinstance(value, dict):
        return {redact_text(k, forms): redact_json(v, forms) for k, v in value.items()}
    return value


def redact_error(error: RunnerPoolError, forms: tuple[str, ...]) -> RunnerPoolError:
    """``error`` with every text field redacted (the same type; unchanged if nothing matched)."""
    if not forms:
        return error
    data = error.to_json()
    redacted = redact_json(data, forms)
    if redacted == data or not isinstance(redacted, dict):
        return error
    return decode_pool_error(redacted)
