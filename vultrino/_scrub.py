"""Removing known secret values from anything Vultrino hands back or writes down.

The host scrubs every action result (and every error message a caller can see) of the
credential's secret field values before they reach a caller: plain, base64, hex, percent-encoded
(as a query or a path quotes it, ``%2F`` and ``%2f`` alike) and JSON-escaped (``\\/`` too). A
plugin whose *purpose* is to return something derived from a secret (a signature, a one-time
code) is unaffected: only the secret values themselves are replaced.

Matching is one compiled regular expression per set of secrets (:class:`Scrubber`), built once
and reused for every call with the same secrets (:func:`scrubber`), so a string holding no
secret costs a single regex scan. Where two forms overlap, everything either covers is replaced.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, AnyStr, TypeVar
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
MIN_SECRET_LEN = 4  # shorter values would shred ordinary text; documented in docs/security.md

_PERCENT = re.compile(r"%[0-9A-F]{2}")
E = TypeVar("E", bound=BaseException)
_REDACTED_BYTES = REDACTED.encode()
_CACHE_SIZE = 256  # distinct secret sets whose matchers are kept (one per credential in use)


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


def scrub_error(exc: E, forms: Scrubber | Sequence[str]) -> E:
    """``exc`` with its message (and its ``problems`` and ``detail``) scrubbed, in place (its
    type and other attributes stay), and the chain it was raised from cut: a cause may quote
    what the message no longer does. Raise the result ``from None``."""
    if forms:
        exc.args = tuple(scrub(a, forms) if isinstance(a, str) else a for a in exc.args)
        problems = getattr(exc, "problems", None)
        if isinstance(problems, list):
            problems[:] = [scrub(p, forms) if isinstance(p, str) else p for p in problems]
        detail = getattr(exc, "detail", None)
        if isinstance(detail, dict):  # a plugin's log lines and traceback (errors.py)
            exc.detail = scrub(detail, forms)  # type: ignore[attr-defined]
    exc.__cause__ = None
    exc.__suppress_context__ = True
    return exc


def _spans(pattern: re.Pattern[Any], value: Any) -> list[tuple[int, int]]:
    """The merged spans of every occurrence of any form, overlapping ones included.

    The alternatives are ordered longest first, so the match found at a position is the
    longest form starting there; searching again one position later finds forms that begin
    inside it.
    """
    spans: list[tuple[int, int]] = []
    m = pattern.search(value)
    while m is not None:
        start, end = m.span()
        if spans and start < spans[-1][1]:
            if end > spans[-1][1]:
                spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
        m = pattern.search(value, start + 1)
    return spans


def _redacted(pattern: re.Pattern[AnyStr], value: AnyStr, mark: AnyStr) -> AnyStr:
    """``value`` with every span :func:`_spans` finds replaced by ``mark`` (str or bytes)."""
    spans = _spans(pattern, value)
    if not spans:
        return value
    parts: list[AnyStr] = []
    last = 0
    for start, end in spans:
        parts += (value[last:start], mark)
        last = end
    parts.append(value[last:])
    return value[:0].join(parts)


def _never(value: str) -> None:
    return None


class Scrubber:
    """Replaces every form of a fixed set of secrets, in str and bytes, with ``[REDACTED]``."""

    __slots__ = ("_bytes", "_search", "_shortest", "_text", "forms")

    def __init__(self, forms: Sequence[str]) -> None:
        self.forms: tuple[str, ...] = tuple(sorted(forms, key=len, reverse=True))
        self._text: re.Pattern[str] | None = None
        self._bytes: re.Pattern[bytes] | None = None
        self._search: Callable[[str], re.Match[str] | None] = _never
        self._shortest = len(self.forms[-1]) if self.forms else 0  # no match in less text
        if self.forms:
            self._text = re.compile("|".join(re.escape(f) for f in self.forms))
            self._search = self._text.search
            encoded = (f.encode("utf-8", "surrogatepass") for f in self.forms)
            self._bytes = re.compile(b"|".join(re.escape(b) for b in encoded))

    def __bool__(self) -> bool:
        return bool(self.forms)

    def __repr__(self) -> str:
        return f"<Scrubber of {len(self.forms)} forms>"  # never the forms themselves

    def text(self, value: str) -> str:
        pattern = self._text
        if pattern is None:
            return value
        if pattern.fullmatch(value) is not None:  # the commonest case: a field that is a secret
            return REDACTED
        return _redacted(pattern, value, REDACTED)

    def data(self, value: bytes) -> bytes:
        return value if self._bytes is None else _redacted(self._bytes, value, _REDACTED_BYTES)

    def __call__(self, value: Any) -> Any:
        """``value`` with every occurrence replaced, recursively (tuples become lists)."""
        if self._text is None:
            return value
        return self._any(value)

    def in_place(self, value: Any) -> Any:
        """What calling the scrubber returns, made by changing ``value``'s dicts and lists in
        place: for a value that is the caller's alone (an action's fresh result), it spares
        copying every container. Returns the scrubbed value (``value`` itself when it is a dict
        or a list)."""
        if self._text is None:
            return value
        kind = type(value)
        if kind is dict:
            self._dict_in_place(value)
            return value
        if kind is list:
            self._list_in_place(value)
            return value
        return self._any(value)

    def _dict_in_place(self, value: dict[Any, Any]) -> None:
        search = self._search
        shortest = self._shortest
        rekey = False
        for key, item in value.items():  # replacing the value of a key is allowed meanwhile
            kind = type(key)
            if kind is str:
                if len(key) >= shortest and search(key) is not None:
                    rekey = True
            elif kind not in _PLAIN:
                rekey = True
            kind = type(item)
            if kind is str:
                if len(item) >= shortest and search(item) is not None:
                    value[key] = self.text(item)
            elif kind is dict:
                self._dict_in_place(item)
            elif kind is list:
                self._list_in_place(item)
            elif kind not in _PLAIN:
                value[key] = self._any(item)
        if rekey:  # rare: a key holds a secret (or is not a plain value); keep the order
            items = list(value.items())
            value.clear()
            for key, item in items:
                value[self._any(key)] = item

    def _list_in_place(self, value: list[Any]) -> None:
        search = self._search
        shortest = self._shortest
        for i, item in enumerate(value):
            kind = type(item)
            if kind is str:
                if len(item) >= shortest and search(item) is not None:
                    value[i] = self.text(item)
            elif kind is dict:
                self._dict_in_place(item)
            elif kind is list:
                self._list_in_place(item)
            elif kind not in _PLAIN:
                value[i] = self._any(item)

    def _any(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is dict:
            return self._dict(value)
        if kind is list or kind is tuple:
            return self._list(value)
        if kind in _PLAIN:
            return value
        if isinstance(value, str):
            return self.text(str(value))
        if isinstance(value, dict):
            return self._dict(value)
        if isinstance(value, (list, tuple)):
            return self._list(value)
        if isinstance(value, (bytes, bytearray)):
            return self.data(bytes(value))
        return value

    # The container walks test the common leaf types inline, and search a string only when it
    # is long enough to hold the shortest form: most results are small maps of short strings
    # and numbers, and a function call or a search per leaf would cost more than the rest.
    def _dict(self, value: dict[Any, Any]) -> dict[Any, Any]:
        search = self._search
        shortest = self._shortest
        out = {}
        for key, item in value.items():
            k, v = key, item
            if type(k) is str:
                if len(k) >= shortest and search(k) is not None:
                    k = self.text(k)
            elif type(k) not in _PLAIN:
                k = self._any(k)
            kind = type(v)
            if kind is str:
                if len(v) >= shortest and search(v) is not None:
                    v = self.text(v)
            elif kind is dict:
                v = self._dict(v)
            elif kind not in _PLAIN:
                v = self._any(v)
            out[k] = v
        return out

    def _list(self, value: list[Any] | tuple[Any, ...]) -> list[Any]:
        search = self._search
        shortest = self._shortest
        out = []
        for item in value:
            v = item
            kind = type(v)
            if kind is str:
                if len(v) >= shortest and search(v) is not None:
                    v = self.text(v)
            elif kind is dict:
                v = self._dict(v)
            elif kind not in _PLAIN:
                v = self._any(v)
            out.append(v)
        return out


_PLAIN = frozenset({int, float, bool, type(None)})


@lru_cache(maxsize=_CACHE_SIZE)
def _scrubber_of(secrets: tuple[str, ...]) -> Scrubber:
    return Scrubber(secret_forms(secrets))


def clear_scrubbers() -> None:
    """Forget every cached scrubber (they hold the secrets' forms); ``Vultrino.close`` calls it."""
    _scrubber_of.cache_clear()


def scrubber(values: Iterable[Any]) -> Scrubber:
    """The (cached) scrubber of these secret values; values too short to scrub are ignored.

    Keyed by the values themselves, so a changed secret can never be matched by a stale entry.
    """
    key = tuple([v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LEN])
    return _scrubber_of(key)


def scrub(value: Any, forms: Scrubber | Sequence[str]) -> Any:
    """``value`` with every occurrence of any of ``forms`` replaced, recursively."""
    if not forms:
        return value
    matcher = forms if isinstance(forms, Scrubber) else Scrubber(forms)
    return matcher(value)
