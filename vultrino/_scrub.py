"""Removing known secret values from anything Vultrino hands back or writes down.

The host scrubs every action result (and every error message a caller can see) of the
credential's secret field values before they reach a caller: plain, base64, hex, percent-encoded
(as a query or a path quotes it, ``%2F`` and ``%2f`` alike) and JSON-escaped (``\\/`` too). A
plugin whose *purpose* is to return something derived from a secret (a signature, a one-time
code) is unaffected: only the secret values themselves are replaced.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
MIN_SECRET_LEN = 4  # shorter values would shred ordinary text; documented in docs/security.md

_PERCENT = re.compile(r"%[0-9A-F]{2}")
E = TypeVar("E", bound=BaseException)


def secret_forms(values: Iterable[Any]) -> list[str]:
    """Every form of each secret worth scrubbing, longest first (so no form is half-replaced)."""
    forms: set[str] = set()
    for value in values:
        if not isinstance(value, str) or len(value) < MIN_SECRET_LEN:
            continue
        raw = value.encode("utf-8", "surrogatepass")
        forms.add(value)
        forms.update(_text_forms(value))
        forms.add(raw.hex())
        forms.add(raw.hex().upper())
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            whole = encode(raw).decode()
            forms.add(whole)
            forms.add(whole.rstrip("="))
            # Inside a longer base64 value the secret starts at any byte offset mod 3; these
            # are the characters that depend on its bytes alone.
            for shift in (0, 1, 2):
                middle = encode(b"\0" * shift + raw).decode()[4 if shift else 0 : -4]
                if len(middle) >= 8:
                    forms.add(middle)
    return sorted(forms, key=len, reverse=True)


def _text_forms(value: str) -> set[str]:
    """How a server or a URL echoes text back: percent-encoded (every byte, a path's quoting that
    keeps ``/``, a form's ``+`` for space; upper- and lower-case hex) and JSON-escaped (ASCII or
    not, with ``/`` plain or as ``\\/``)."""
    out: set[str] = set()
    encoded_forms = (
        quote(value, safe="", errors="surrogatepass"),
        quote(value, safe="/", errors="surrogatepass"),
        quote_plus(value, errors="surrogatepass"),
    )
    for encoded in encoded_forms:
        out.add(encoded)
        out.add(_PERCENT.sub(lambda m: m.group(0).lower(), encoded))
    for ascii_only in (True, False):
        escaped = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        out.update({escaped, escaped.replace("/", "\\/")})
    return {form for form in out if form}


def scrub_error(exc: E, forms: list[str]) -> E:
    """``exc`` with its message scrubbed, in place (its type and attributes stay), and the
    chain it was raised from cut: a cause may quote what the message no longer does. Raise the
    result ``from None``."""
    if forms:
        exc.args = tuple(scrub(a, forms) if isinstance(a, str) else a for a in exc.args)
        problems = getattr(exc, "problems", None)
        if isinstance(problems, list):
            problems[:] = [scrub(p, forms) if isinstance(p, str) else p for p in problems]
    exc.__cause__ = None
    exc.__suppress_context__ = True
    return exc


def scrub(value: Any, forms: list[str]) -> Any:
    """``value`` with every occurrence of any of ``forms`` replaced, recursively."""
    if not forms:
        return value
    if isinstance(value, str):
        for form in forms:
            if form in value:
                value = value.replace(form, REDACTED)
        return value
    if isinstance(value, dict):
        return {scrub(k, forms): scrub(v, forms) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, forms) for v in value]
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        for form in forms:
            data = data.replace(form.encode("utf-8", "surrogatepass"), REDACTED.encode())
        return data
    return value
