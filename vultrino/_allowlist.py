"""URL allowlists: which URLs a credential may be sent to.

A credential of the built-in HTTP plugin carries a list of patterns (docs/http.md):

    [METHODS ]scheme://host[:port][/path-prefix[*]]        or        *

Matching is done on *normalised* URLs, and the normalised URL is what is then sent, so the
string that was checked is the string the server receives. Normalisation is deliberately
strict: anything a server might read differently from us (userinfo, backslashes, ambiguous
numeric hosts, malformed percent-escapes, control characters) is refused instead of guessed at.

Paths are matched twice: once as sent, and once in a "hostile view" that decodes
percent-escapes repeatedly, treats ``\\`` and encoded ``/`` as separators, drops ``;params`` and
empty segments and resolves dot segments — the worst a sloppy server could make of the path.
A URL is inside a path prefix only if both views are, so ``/v1/..%2F..%2Fadmin`` cannot escape
``/v1/*``.

Errors: a malformed URL is a :class:`ParameterError`, userinfo or a URL outside the list is an
:class:`AccessDeniedError`, a malformed pattern is a :class:`CredentialValidationError`.
"""

from __future__ import annotations

import ipaddress
import re
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from vultrino.errors import (
    AccessDeniedError,
    AgentPolicyError,
    CredentialValidationError,
    ParameterError,
)

__all__ = [
    "ANY",
    "DEFAULT_PORTS",
    "METHODS",
    "AllowPattern",
    "Allowlist",
    "NormalizedURL",
    "UrlSyntaxError",
    "hostile_path",
    "normalize_host",
    "normalize_pattern",
    "normalize_url",
    "parse_pattern",
    "remove_dot_segments",
    "validate_patterns",
]

PLUGIN = "http"
ANY = "*"
METHODS: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}
MAX_URL_LENGTH = 16384

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_PATH_SAFE = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_QUERY_SAFE = _PATH_SAFE | frozenset("?")
_HEX = frozenset(string.hexdigits)
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):(.*)", re.DOTALL)
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL_RE = re.compile(r"(?:[0-9]+|0[xX][0-9a-fA-F]*)")
_OCTET_RE = re.compile(r"(?:0|[1-9][0-9]{0,2})")
_ENCODED_CONTROL_RE = re.compile(r"%(?:[01][0-9A-F]|7F)")
_MAX_DECODE_ROUNDS = 4


class UrlSyntaxError(ValueError):
    """Internal: a URL or pattern part is malformed. Callers re-raise it as a VultrinoError."""


# --- URLs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormalizedURL:
    """An absolute http(s) URL in canonical form.

    ``host`` is lowercase ASCII (IDNA-encoded; an IPv6 address without brackets), ``port`` is
    always explicit, ``path`` starts with ``/`` and has no dot segments, ``query`` excludes the
    ``?`` (empty when there is none). There is never userinfo or a fragment.
    """

    scheme: str
    host: str
    port: int
    path: str
    query: str = ""

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if DEFAULT_PORTS[self.scheme] == self.port:
            return host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL to send (default port omitted, as every client writes it)."""
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.netloc}{self.path}{query}"

    @property
    def display(self) -> str:
        """The URL without its query (which may carry secrets), shortened for messages."""
        path = self.path if len(self.path) <= 120 else self.path[:117] + "..."
        return f"{self.scheme}://{self.netloc}{path}"

    def with_query(self, query: str) -> NormalizedURL:
        return NormalizedURL(self.scheme, self.host, self.port, self.path, query)


def normalize_url(url: str) -> NormalizedURL:
    """Parse and canonicalise an absolute http(s) URL.

    Raises ParameterError for a malformed or unsupported URL and AccessDeniedError for a URL
    with userinfo (``user:pass@host``), which is refused outright: credentials come from the
    store, never from the URL, and ``@`` is the classic way to disguise a host.
    """
    if not isinstance(url, str):
        raise ParameterError(f"url must be a string, got {type(url).__name__}", plugin=PLUGIN)
    try:
        return _normalize_url(url)
    except UrlSyntaxError as exc:
        raise ParameterError(f"invalid URL {_shorten(url)!r}: {exc}", plugin=PLUGIN) from None


def _normalize_url(url: str) -> NormalizedURL:
    text = url.strip(" ")
    if not text:
        raise UrlSyntaxError("the URL is empty")
    if len(text) > MAX_URL_LENGTH:
        raise UrlSyntaxError(f"longer than {MAX_URL_LENGTH} characters")
    _check_characters(text)
    m = _SCHEME_RE.fullmatch(text)
    if m is None:
        raise UrlSyntaxError("not an absolute URL; write it as https://host/path")
    scheme = m.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlSyntaxError(f"scheme {scheme!r} is not supported; use http or https")
    rest = m.group(2)
    if not rest.startswith("//"):
        raise UrlSyntaxError("expected '//' after the scheme, as in https://host/path")
    rest = rest[2:].split("#", 1)[0]  # the fragment never leaves the client
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, remainder = rest[:end], rest[end:]
    if "@" in authority:
        raise AccessDeniedError(
            f"URL {_shorten(_strip_userinfo(text))!r} contains userinfo ('user@' or "
            "'user:password@' before the host), which is refused: the credential supplies the "
            "authentication, and '@' can disguise the real host",
            plugin=PLUGIN,
        )
    host, port = _parse_authority(authority, scheme)
    path, _, query = remainder.partition("?")
    return NormalizedURL(
        scheme=scheme,
        host=host,
        port=port,
        path=_normalize_path(path),
        query=_normalize_component(query, _QUERY_SAFE, "query"),
    )


def _check_characters(text: str) -> None:
    for ch in text:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise UrlSyntaxError(f"contains the control character {ch!r}")
        if ch == "\\":
            raise UrlSyntaxError("contains a backslash; use '/' (or %5C inside a path)")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise UrlSyntaxError("contains an unpaired surrogate")


def _strip_userinfo(text: str) -> str:
    """``text`` with the userinfo hidden (it may hold a password)."""
    m = re.match(r"([^:/]*://)([^/?#]*@)(.*)", text, re.DOTALL)
    return f"{m.group(1)}***@{m.group(3)}" if m else text


def _parse_authority(authority: str, scheme: str) -> tuple[str, int]:
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise UrlSyntaxError("unclosed '[' in the host")
        host = _normalize_ipv6(authority[1:close])
        after = authority[close + 1 :]
        if after and not after.startswith(":"):
            raise UrlSyntaxError("unexpected characters after the IPv6 address")
        port_text = after[1:] if after else None
    else:
        if authority.count(":") > 1:
            raise UrlSyntaxError("more than one ':' in the host; IPv6 addresses need [brackets]")
        host_text, sep, port_part = authority.partition(":")
        host = normalize_host(host_text)
        port_text = port_part if sep else None
    return host, _parse_port(port_text, scheme)


def _parse_port(port_text: str | None, scheme: str) -> int:
    if port_text is None or port_text == "":
        return DEFAULT_PORTS[scheme]
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise UrlSyntaxError(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise UrlSyntaxError(f"port {port} is out of range (1-65535)")
    return port


def _normalize_ipv6(text: str) -> str:
    if "%" in text:
        raise UrlSyntaxError("IPv6 zone identifiers are not supported")
    try:
        return ipaddress.IPv6Address(text).compressed
    except ValueError:
        raise UrlSyntaxError(f"{text!r} is not an IPv6 address") from None


def normalize_host(text: str) -> str:
    """A DNS name or dotted-quad IPv4 address in canonical form (lowercase ASCII, IDNA).

    Raises UrlSyntaxError. Numeric forms other than a plain dotted quad (``127.1``,
    ``0x7f.0.0.1``, ``2130706433``, ``0177.0.0.1``) are refused: resolvers read them as
    addresses in ways that differ between libraries.
    """
    if not text:
        raise UrlSyntaxError("the host is empty")
    if "%" in text:
        raise UrlSyntaxError("percent-encoded characters are not allowed in the host")
    if not text.isascii():
        import idna  # only for non-ASCII hosts: most processes never need it

        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise UrlSyntaxError(
                f"the host is not a valid internationalised name ({exc})"
            ) from None
    host = text.lower()
    if host.endswith("."):
        host = host[:-1]  # the root label: "example.com." is "example.com"
    if not host or len(host) > 253:
        raise UrlSyntaxError("the host is empty or longer than 253 characters")
    labels = host.split(".")
    if _NUMERIC_LABEL_RE.fullmatch(labels[-1]):
        if len(labels) != 4 or not all(_OCTET_RE.fullmatch(p) and int(p) <= 255 for p in labels):
            raise UrlSyntaxError(
                f"{text!r} is an ambiguous numeric host; write IPv4 addresses as four decimal "
                "numbers without leading zeros (like 127.0.0.1)"
            )
        return host
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise UrlSyntaxError(f"{text!r} is not a valid host name")
    if any(label.startswith("xn--") for label in labels):
        import idna

        try:
            idna.decode(host)
        except (idna.IDNAError, UnicodeError, ValueError):
            raise UrlSyntaxError(f"{text!r} has an invalid punycode label") from None
    return host


def _normalize_component(text: str, safe: frozenset[str], where: str) -> str:
    """Percent-encoding normalisation: decode unreserved characters, upper-case the hex of the
    rest, encode (as UTF-8) every character that may not appear literally."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%":
            hx = text[i + 1 : i + 3]
            if len(hx) != 2 or not set(hx) <= _HEX:
                raise UrlSyntaxError(
                    f"malformed percent-escape {text[i : i + 3]!r} in the {where} "
                    "(write a literal '%' as %25)"
                )
            decoded = chr(int(hx, 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + hx.upper())
            i += 3
            continue
        if ch in safe:
            out.append(ch)
        else:
            try:
                raw = ch.encode("utf-8")
            except UnicodeEncodeError:
                raise UrlSyntaxError(f"the {where} is not valid Unicode") from None
            out.append("".join(f"%{b:02X}" for b in raw))
        i += 1
    return "".join(out)


def _normalize_path(path: str) -> str:
    canonical = _normalize_component(path, _PATH_SAFE, "path")
    if _ENCODED_CONTROL_RE.search(canonical):
        raise UrlSyntaxError("the path contains an encoded control character")
    return remove_dot_segments(canonical or "/")


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, for an absolute path. The result always starts with '/'."""
    out: list[str] = []
    segments = path.split("/")[1:] if path.startswith("/") else path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def _compatible(data: bytes) -> bytes:
    """``data`` with its Unicode compatibility forms folded (NFKC), as a server that
    normalises paths reads them: the two-dot leader U+2025 becomes ``..``, and the fullwidth
    full stop, solidus and percent sign (U+FF0E, U+FF0F, U+FF05) become ``.``, ``/``, ``%``."""
    if data.isascii():
        return data
    text = data.decode("utf-8", "surrogateescape")
    return unicodedata.normalize("NFKC", text).encode("utf-8", "surrogateescape")


def hostile_path(path: str) -> bytes:
    """The worst reading of ``path`` a lenient server might make (see the module docstring).

    Raises UrlSyntaxError when the path is still changing after several decoding rounds.
    """
    data = path.encode("utf-8", "surrogateescape")
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = _compatible(unquote_to_bytes(data))
        if decoded == data:
            break
        data = decoded
    else:
        if _compatible(unquote_to_bytes(data)) != data:
            raise UrlSyntaxError("the path is percent-encoded too many times over")
    data = data.replace(b"\\", b"/")
    segments: list[bytes] = []
    for part in data.split(b"/"):
        seg = part.split(b";", 1)[0]  # Tomcat-style path parameters: "..;x" is ".."
        if not seg.strip(b" \t."):
            dots = seg.count(b".")  # Windows drops trailing dots and spaces: ".. " is ".."
            seg = b".." if dots >= 2 else b"." if dots == 1 else seg
        segments.append(seg)
    trailing = len(segments) > 1 and segments[-1] in (b"", b".", b"..")
    kept: list[bytes] = []
    for seg in segments:
        if seg in (b"", b"."):
            continue
        if seg == b"..":
            if kept:
                kept.pop()
            continue
        kept.append(seg)
    result = b"/" + b"/".join(kept)
    if trailing and kept:
        result += b"/"
    return result


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- patterns --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowPattern:
    """One parsed allowlist pattern. ``any`` is the ``*`` pattern; ``methods`` empty = all."""

    any: bool = False
    methods: frozenset[str] = frozenset()
    scheme: str = ""
    host: str = ""
    wildcard_host: bool = False
    port: int = 0
    path: str = "/"
    prefix: bool = True

    def __str__(self) -> str:
        methods = ",".join(m for m in METHODS if m in self.methods)
        if self.any:
            return f"{methods} {ANY}" if methods else ANY
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.wildcard_host:
            host = "*." + host
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        star = "*" if self.prefix else ""
        url = f"{self.scheme}://{host}{port}{self.path}{star}"
        return f"{methods} {url}" if methods else url

    def matches(self, method: str, url: NormalizedURL) -> bool:
        if self.methods and method.upper() not in self.methods:
            return False
        if self.any:
            return True
        if url.scheme != self.scheme or url.port != self.port:
            return False
        if self.wildcard_host:
            if not url.host.endswith("." + self.host):
                return False
        elif url.host != self.host:
            return False
        return _path_matches(self.path.encode(), self.prefix, url.path.encode()) and (
            _path_matches(hostile_path(self.path), self.prefix, hostile_path(url.path))
        )


def _path_matches(base: bytes, prefix: bool, path: bytes) -> bool:
    """Exact match, or prefix match where ``/dir/*`` also covers ``/dir`` itself."""
    if not prefix:
        return path == base
    if base.endswith(b"/"):
        return path.startswith(base) or path == base[:-1]
    return path.startswith(base)


def parse_pattern(text: str) -> AllowPattern:
    """Parse one allowlist pattern. Raises CredentialValidationError naming the pattern."""
    if not isinstance(text, str):
        raise CredentialValidationError(
            f"allowlist pattern must be a string, got {type(text).__name__}"
        )
    try:
        return _parse_pattern(text)
    except UrlSyntaxError as exc:
        raise CredentialValidationError(
            f"invalid allowlist pattern {_shorten(text)!r}: {exc}. Patterns look like "
            "'https://api.example.com/v1/*' or 'GET,POST https://api.example.com/*' "
            "(see docs/http.md)"
        ) from None


def _parse_pattern(text: str) -> AllowPattern:
    raw = text.strip()
    if not raw:
        raise UrlSyntaxError("the pattern is empty")
    if len(raw) > 2048:
        raise UrlSyntaxError("the pattern is longer than 2048 characters")
    if raw == ANY:
        return AllowPattern(any=True)
    parts = raw.split()
    if len(parts) > 2:
        raise UrlSyntaxError("expected '[METHODS ]scheme://host[:port][/path]'")
    methods: frozenset[str] = frozenset()
    if len(parts) == 2:
        methods = _parse_methods(parts[0])
        target = parts[1]
        if target == ANY:
            return AllowPattern(any=True, methods=methods)
    else:
        target = parts[0]
    _check_characters(target)
    m = _SCHEME_RE.fullmatch(target)
    if m is None or not m.group(2).startswith("//"):
        raise UrlSyntaxError("expected scheme://host, as in https://api.example.com/*")
    scheme = m.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlSyntaxError(f"scheme {scheme!r} is not supported; use http or https")
    rest = m.group(2)[2:]
    for bad, what in (("?", "a query"), ("#", "a fragment"), ("@", "userinfo")):
        if bad in rest:
            raise UrlSyntaxError(f"patterns cannot contain {what} ({bad!r})")
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    wildcard = authority.startswith("*.")
    if wildcard:
        authority = authority[2:]
    if "*" in authority:
        raise UrlSyntaxError(
            "a host wildcard is only allowed as the whole leading label, as in "
            "https://*.example.com/*"
        )
    host, port = _parse_authority(authority, scheme)
    if wildcard:
        labels = host.split(".")
        if ":" in host or len(labels) < 2 or _NUMERIC_LABEL_RE.fullmatch(labels[-1]):
            raise UrlSyntaxError(
                "a host wildcard needs a domain of at least two labels after it "
                "(https://*.example.com/*), and cannot be used with IP addresses"
            )
    base, prefix = _parse_pattern_path(path)
    return AllowPattern(
        methods=methods,
        scheme=scheme,
        host=host,
        wildcard_host=wildcard,
        port=port,
        path=base,
        prefix=prefix,
    )


def _parse_methods(text: str) -> frozenset[str]:
    names = [n.strip().upper() for n in text.split(",")]
    if not names or any(n not in METHODS for n in names):
        raise UrlSyntaxError(
            f"{text!r} is not a comma-separated list of HTTP methods ({', '.join(METHODS)})"
        )
    return frozenset(names)


def _parse_pattern_path(path: str) -> tuple[str, bool]:
    if path in ("", "/*"):
        return "/", True  # no path: the whole origin
    prefix = path.endswith("*")
    base = path[:-1] if prefix else path
    if "*" in base:
        raise UrlSyntaxError("'*' is only allowed at the very end of the path")
    canonical = _normalize_component(base, _PATH_SAFE, "path")
    segments = canonical.split("/")[1:]
    if _ENCODED_CONTROL_RE.search(canonical) or re.search("%(?:2F|5C)", canonical):
        raise UrlSyntaxError("the path cannot contain encoded '/', '\\' or control characters")
    if ";" in canonical:
        raise UrlSyntaxError("the path cannot contain ';'")
    if any(seg in (".", "..") for seg in segments) or "//" in canonical:
        raise UrlSyntaxError("the path cannot contain '.', '..' or empty segments")
    return canonical, prefix


def normalize_pattern(text: str) -> str:
    """The canonical spelling of a pattern (what is stored and shown)."""
    return str(parse_pattern(text))


# --- lists -----------------------------------------------------------------------------------


class Allowlist:
    """A credential's parsed patterns, checked against (method, normalised URL) pairs."""

    def __init__(
        self,
        patterns: Iterable[str],
        *,
        alias: str = "",
        narrow: Iterable[str] = (),
        narrowed_by: str = "",
    ) -> None:
        self.alias = alias
        self.patterns: tuple[AllowPattern, ...] = tuple(parse_pattern(p) for p in patterns)
        # The caller's patterns (the policy decision's narrowing): a request must match one of
        # them as well (never wider); ``narrowed_by`` names whose they are in a refusal.
        self.narrow: tuple[AllowPattern, ...] = tuple(parse_pattern(p) for p in narrow)
        self.narrowed_by = narrowed_by

    def describe(self) -> str:
        return ", ".join(str(p) for p in self.patterns) or "(none)"

    def find(self, method: str, url: NormalizedURL) -> AllowPattern | None:
        """The first pattern that allows ``method url``, or None."""
        for pattern in self.patterns:
            try:
                if pattern.matches(method, url):
                    return pattern
            except UrlSyntaxError:
                return None  # a path too mangled to read safely matches nothing
        return None

    def names_host(self, method: str, url: NormalizedURL) -> bool:
        """Whether a pattern that admits ``method url`` names its host exactly — not ``*``, not
        a ``*.`` wildcard. Only such a host may resolve to a loopback, private or other
        non-public address (docs/http.md, "Private addresses"). The caller's narrowing never
        counts: it can only take away."""
        return any(
            not p.any and not p.wildcard_host and _safe_match(p, method, url) for p in self.patterns
        )

    def names_host_of(self, host: str) -> bool:
        """Whether any pattern names ``host`` (a normalised host) exactly, whatever its
        scheme, port, path or methods."""
        return any(not p.any and not p.wildcard_host and p.host == host for p in self.patterns)

    def check(self, method: str, url: NormalizedURL, *, what: str = "request") -> AllowPattern:
        """Return the matching pattern, or raise AccessDeniedError naming the pattern list."""
        who = f"credential {self.alias!r}" if self.alias else "this credential"
        if not self.patterns:
            raise AccessDeniedError(
                f"{who} has an empty URL allowlist, so it cannot be used for HTTP requests; "
                "add one with --allow PATTERN (for example --allow 'https://api.example.com/*')",
                plugin=PLUGIN,
            )
        found = self.find(method, url)
        if found is None:
            raise AccessDeniedError(
                f"{what} {method.upper()} {url.display} is outside the allowlist of {who}: "
                f"{self.describe()}. Nothing was sent. Use a URL that matches one of these "
                "patterns, or ask the user to add one with --allow PATTERN",
                plugin=PLUGIN,
            )
        if self.narrow and not any(_safe_match(p, method, url) for p in self.narrow):
            whose = self.narrowed_by or "the caller"
            raise AgentPolicyError(
                f"{what} {method.upper()} {url.display} is outside the URL patterns of {whose}: "
                f"{', '.join(str(p) for p in self.narrow)}. Nothing was sent. Use a URL that "
                "matches one of these patterns",
                agent="",  # the call pipeline names the agent
                plugin=PLUGIN,
            )
        return found


def _safe_match(pattern: AllowPattern, method: str, url: NormalizedURL) -> bool:
    try:
        return pattern.matches(method, url)
    except UrlSyntaxError:
        return False


def validate_patterns(patterns: Sequence[str]) -> list[str]:
    """Canonical spellings of ``patterns``, duplicates removed, order kept.

    Raises CredentialValidationError for the first bad pattern.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    out: list[str] = []
    for p in patterns:
        canonical = normalize_pattern(p)
        if canonical not in out:
            out.append(canonical)
    return out
