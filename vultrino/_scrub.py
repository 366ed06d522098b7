"""Removing known secret values from anything Vultrino hands back or writes down.

The host scrubs every action result (and every plugin error message) of the credential's secret
field values before they reach a caller, in plain, base64 and hex form. A plugin whose *purpose*
is to return something derived from a secret (a signature, a one-time code) is unaffected: only
the secret values themselves are replaced.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
MIN_SECRET_LEN = 4  # shorter values would shred ordinary text; documented in docs/security.md


def secret_forms(values: Iterable[Any]) -> list[str]:
    """Every form of each secret worth scrubbing, longest first (so no form is half-replaced)."""
    forms: set[str] = set()
    for value in values:
        if not isinstance(value, str) or len(value) < MIN_SECRET_LEN:
            continue
        raw = value.encode()
        forms.add(value)
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
            data = data.replace(form.encode(), REDACTED.encode())
        return data
    return value
