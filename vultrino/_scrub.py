"""Removing known secret values from anything Vultrino hands back or writes down.

The host scrubs every action result (and every error message a caller can see) of the
credential's secret field values before they reach a caller: plain, base64, hex, percent-encoded
(as a query or a path quotes it, ``%2F`` and ``%2f`` alike) and JSON-escaped (``\\/`` too). A
plugin whose *purpose* is to return something derived from a secret (a signature, a one-time
code) is unaffected: only the secret values themselves are replaced.

Matching is one compiled regular expression per set of secrets (:class:`Scrubber`), built once
and reused for every call with the same secrets (:func:`scrubber`). Where two forms overlap,
everything either covers is replaced. The regular expression tries every form at every
position, which costs about 25 ms per MiB: a long value (an HTTP body) is first tested with
plain substring searches for a few *needles* — the forms that contain no shorter form, so a
value holding none of them holds no form at all — and only a value that holds one is searched
with the expression. Both ways give the same answer; the needles only decide whether the
expression needs to run.
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
#: From this length on, a value is tested with the needles before the regular expression runs
#: (shorter ones: one regex search is cheaper than a substring search per needle).
LONG_VALUE = 512
_LONG = LONG_VALUE


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


def _spans(
    pattern: re.Pattern[Any], value: Any, first: re.Match[Any] | None = None
) -> list[tuple[int, int]]:
    """The merged spans of every occurrence of any form, overlapping ones included
    (``first``: the first match, when the caller has searched already).

    The alternatives are ordered longest first, so the match found at a position is the
    longest form starting there; searching again one position later finds forms that begin
    inside it.
    """
    spans: list[tuple[int, int]] = []
    m = first if first is not None else pattern.search(value)
    while m is not None:
        start, end = m.span()
        if spans and start < spans[-1][1]:
            if end > spans[-1][1]:
                spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
        m = pattern.search(value, start + 1)
    return spans


def _redacted(
    pattern: re.Pattern[AnyStr],
    value: AnyStr,
    mark: AnyStr,
    first: re.Match[AnyStr] | None = None,
) -> AnyStr:
    """``value`` with every span :func:`_spans` finds replaced by ``mark`` (str or bytes)."""
    spans = _spans(pattern, value, first)
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

    __slots__ = (
        "_byte_needles",
        "_bytes",
        "_needles",
        "_search",
        "_set",
        "_shortest",
        "_text",
        "forms",
    )

    def __init__(self, forms: Sequence[str]) -> None:
        self.forms: tuple[str, ...] = tuple(sorted(forms, key=len, reverse=True))
        self._set = frozenset(self.forms)
        self._text: re.Pattern[str] | None = None
        self._bytes: re.Pattern[bytes] | None = None
        self._search: Callable[[str], re.Match[str] | None] = _never
        self._shortest = len(self.forms[-1]) if self.forms else 0  # no match in less text
        self._needles = needles(self.forms)
        self._byte_needles = tuple(n.encode("utf-8", "surrogatepass") for n in self._needles)
        if self.forms:
            self._text = re.compile("|".join(re.escape(f) for f in self.forms))
            self._search = self._text.search  # short values; long ones go through _probe
            encoded = (f.encode("utf-8", "surrogatepass") for f in self.forms)
            self._bytes = re.compile(b"|".join(re.escape(b) for b in encoded))

    def _probe(self, value: str) -> re.Match[str] | None:
        """The first match in ``value`` (None: it holds no form); a long value is searched only
        when one of the needles is in it."""
        pattern = self._text
        assert pattern is not None
        if len(value) >= LONG_VALUE:
            for needle in self._needles:
                if needle in value:
                    return pattern.search(value)
            return None
        return pattern.search(value)

    def holds(self, value: str | bytes) -> bool:
        """Whether ``value`` holds any form (str or bytes)."""
        if isinstance(value, str):
            return self._text is not None and self._probe(str(value)) is not None
        if self._bytes is None:
            return False
        data = bytes(value)
        if len(data) >= LONG_VALUE:
            return any(needle in data for needle in self._byte_needles) and (
                self._bytes.search(data) is not None
            )
        return self._bytes.search(data) is not None

    def covers(self, other: Scrubber) -> bool:
        """Whether every form ``other`` replaces, this one replaces too."""
        return other is self or self._set.issuperset(other.forms)

    def __bool__(self) -> bool:
        return bool(self.forms)

    def __repr__(self) -> str:
        return f"<Scrubber of {len(self.forms)} forms>"  # never the forms themselves

    def text(self, value: str) -> str:
        pattern = self._text
        if pattern is None:
            return value
        first = self._probe(value)
        if first is None:
            return value
        # The commonest hit: a field that is a secret. The leftmost match is the longest form
        # at its position (longest first), so a value that is a form matches whole.
        if first.end() == len(value) and first.start() == 0:
            return REDACTED
        return _redacted(pattern, value, REDACTED, first)

    def data(self, value: bytes) -> bytes:
        if self._bytes is None:
            return value
        if len(value) >= LONG_VALUE and not any(n in value for n in self._byte_needles):
            return value
        return _redacted(self._bytes, value, _REDACTED_BYTES)

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
        probe = self._probe
        shortest = self._shortest
        rekey = False
        for key, item in value.items():  # replacing the value of a key is allowed meanwhile
            kind = type(key)
            if kind is str:
                if (n := len(key)) >= shortest and (search(key) if n < _LONG else probe(key)):
                    rekey = True
            elif kind not in _PLAIN:
                rekey = True
            kind = type(item)
            if kind is str:
                if (n := len(item)) >= shortest and (search(item) if n < _LONG else probe(item)):
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
        probe = self._probe
        shortest = self._shortest
        for i, item in enumerate(value):
            kind = type(item)
            if kind is str:
                if (n := len(item)) >= shortest and (search(item) if n < _LONG else probe(item)):
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
        probe = self._probe
        shortest = self._shortest
        out = {}
        for key, item in value.items():
            k, v = key, item
            if type(k) is str:
                if (n := len(k)) >= shortest and (search(k) if n < _LONG else probe(k)):
                    k = self.text(k)
            elif type(k) not in _PLAIN:
                k = self._any(k)
            kind = type(v)
            if kind is str:
                if (n := len(v)) >= shortest and (search(v) if n < _LONG else probe(v)):
                    v = self.text(v)
            elif kind is dict:
                v = self._dict(v)
            elif kind not in _PLAIN:
                v = self._any(v)
            out[k] = v
        return out

    def _list(self, value: list[Any] | tuple[Any, ...]) -> list[Any]:
        search = self._search
        probe = self._probe
        shortest = self._shortest
        out = []
        for item in value:
            v = item
            kind = type(v)
            if kind is str:
                if (n := len(v)) >= shortest and (search(v) if n < _LONG else probe(v)):
                    v = self.text(v)
            elif kind is dict:
                v = self._dict(v)
            elif kind not in _PLAIN:
                v = self._any(v)
            out.append(v)
        return out


_PLAIN = frozenset({int, float, bool, type(None)})


def needles(forms: Iterable[str]) -> tuple[str, ...]:
    """The forms that contain no other form, shortest first: a value that holds none of them
    holds no form at all (each form holds one of them), so they decide whether a value needs
    searching. A secret's whole base64 form holds its base64 middle, for example."""
    out: list[str] = []
    for form in sorted(set(forms), key=len):
        if not any(n in form for n in out):
            out.append(form)
    return tuple(out)


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


class StreamScrubber:
    """Scrubs a byte stream that arrives in chunks, with the forms of one :class:`Scrubber`,
    so that a form split across chunk boundaries is replaced all the same.

    It holds back the last ``L - 1`` bytes of what it was fed (``L``: the longest form's
    length in bytes), unsent: a form that begins there may end in the next chunk. Each round
    searches the held-back bytes and the new chunk together, so every occurrence is seen whole
    in one round (one that does not fit before the held-back part begins lies wholly inside the
    next round's text). A replacement that crosses the point where a round's output ends emits
    ``[REDACTED]`` once and marks the rest of the occurrence in the held-back bytes as covered,
    so nothing of it is sent later either. Memory: one chunk plus ``L - 1`` bytes.
    """

    __slots__ = ("_bytes", "_covered", "_keep", "_needles", "_tail")

    def __init__(self, scrub: Scrubber) -> None:
        self._bytes = scrub._bytes
        self._needles = scrub._byte_needles
        forms = [f.encode("utf-8", "surrogatepass") for f in scrub.forms]
        self._keep = max((len(f) for f in forms), default=1) - 1
        self._tail = b""
        self._covered = 0  # how many leading bytes of the tail are already redacted

    def feed(self, chunk: bytes) -> bytes:
        """The bytes that are safe to send now (possibly ``b""``)."""
        if self._bytes is None:
            return chunk
        return self._round(self._tail + chunk, final=False)

    def finish(self) -> bytes:
        """What is left, scrubbed: call once after the last chunk."""
        if self._bytes is None:
            return b""
        out = self._round(self._tail, final=True)
        self._tail, self._covered = b"", 0
        return out

    def _round(self, buf: bytes, *, final: bool) -> bytes:
        assert self._bytes is not None
        cut = len(buf) if final else len(buf) - self._keep
        if cut <= 0:
            self._tail = buf
            return b""
        # Every whole occurrence in ``buf`` holds a needle: without one there is nothing to
        # find (the plain substring searches cost far less than the expression).
        spans = _spans(self._bytes, buf) if any(n in buf for n in self._needles) else []
        if self._covered:
            spans = _merged([(0, self._covered), *spans])
        out: list[bytes] = []
        last = 0
        covered = 0
        for start, end in spans:
            if start >= cut:
                break
            out.append(buf[last:start])
            # the marker was sent already for a span that began in the covered bytes
            if not (start == 0 and self._covered):
                out.append(_REDACTED_BYTES)
            last = min(end, cut)
            if end > cut:
                covered = end - cut
        out.append(buf[last:cut])
        self._tail = buf[cut:]
        self._covered = covered
        return b"".join(out)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start < out[-1][1]:  # overlapping: one span, as _spans merges them
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out
