"""Property tests for URL normalisation and allowlist matching.

1. Arbitrary strings only ever raise Vultrino's own errors.
2. A normalised URL is a fixed point, and httpx reads it exactly as the allowlist did.
3. URLs assembled from known tricks (case, default ports, trailing dots, userinfo '@', '#' and
   '?' before '@', backslashes, dot segments in plain, percent-encoded, double-encoded and
   ';'-suffixed forms, encoded '/' and '\\') are never reported as matching unless urllib and
   httpx read the original string's origin the same way, and an independent, paranoid reading
   of the path that is actually sent stays inside the pattern.

Runs derandomized, so the examples are the same on every run.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vultrino._allowlist import Allowlist, normalize_url, parse_pattern
from vultrino._net import url_parts
from vultrino.errors import CredentialValidationError, VultrinoError

FUZZ = settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

URL_ALPHABET = st.sampled_from(
    [
        *"abcAB019:/?#[]@!$&'()*+,;=%.-_~\\ \t\n\x00\u00e9\u3002\uff0e\ud800",
        *("%2e", "%2E", "%2f", "%2F", "%5c", "%25", "%00", "..", "http://", "https://", "xn--"),
    ]
)
url_like = st.lists(URL_ALPHABET, max_size=40).map("".join)


@FUZZ
@given(st.one_of(st.text(max_size=80), url_like, url_like.map(lambda s: "http://" + s)))
def test_normalize_url_raises_only_vultrino_errors(text: str) -> None:
    with contextlib.suppress(VultrinoError):
        normalize_url(text)


@FUZZ
@given(st.one_of(st.text(max_size=80), url_like, url_like.map(lambda s: "https://" + s)))
def test_parse_pattern_raises_only_validation_errors(text: str) -> None:
    try:
        pattern = parse_pattern(text)
    except CredentialValidationError:
        return
    assert parse_pattern(str(pattern)) == pattern  # the canonical spelling round-trips


@FUZZ
@given(url_like.map(lambda s: "http://h.example" + s))
def test_normalised_urls_are_fixed_points_that_httpx_agrees_with(text: str) -> None:
    try:
        n = normalize_url(text)
    except VultrinoError:
        return
    assert normalize_url(n.url) == n
    parts = url_parts(n.url)
    assert (parts.scheme, parts.host, parts.port, parts.path, parts.userinfo) == (
        n.scheme,
        n.host,
        n.port,
        n.path,
        "",
    )
    assert parts.query == n.query


# --- adversarial URLs against one pattern ----------------------------------------------------

PATTERN = "http://good.example:8080/safe/*"

# Honest parts are repeated so that about half the generated URLs are reported as matching:
# that branch is the one the oracle checks.
SCHEMES = st.sampled_from(["http"] * 6 + ["HTTP", "hTtP", "https", "ftp"])
HOSTS = st.sampled_from(
    ["good.example"] * 12
    + [
        "GOOD.Example",
        "good.example.",
        "good.example..",
        "evil.example",
        "good.example.evil.example",
        "evilgood.example",
        "good.example@evil.example",
        "evil.example@good.example",
        "evil.example#@good.example",
        "evil.example?@good.example",
        "evil.example\\@good.example",
        "good%2eexample",
        "g\u043eod.example",  # Cyrillic o
        "good\u3002example",  # ideographic full stop
        "127.0.0.1",
        "[::1]",
    ]
)
PORTS = st.sampled_from([":8080"] * 8 + ["", ":80", ":08080", ":8081", ":8080@evil.example", ":"])
SEGMENTS = st.sampled_from(
    [
        "safe",
        "Safe",
        "safe-admin",
        "admin",
        "..",
        ".",
        "...",
        ".. ",
        "%2e%2e",
        "%2E.",
        ".%2e",
        "%2e",
        "..%2f",
        "..%2F..",
        "%2fadmin",
        "..%5c",
        "%5c..",
        "%252e%252e",
        "%25252e%25252e",
        "%252f",
        "..;",
        "..;x",
        "..%3b",
        ";x",
        "",
        "x",
        "%00",
        "..%00",
        "%20",
        "..%20",
        "\\..",
        "@",
        "#",
        "?",
        "%3f",
        "%23",
    ]
)


def paranoid_path(sent: str) -> str:
    """The most hostile reading a server could make of the path of the URL that is sent,
    written independently of the module."""
    path = urlsplit(sent).path
    for _ in range(8):
        decoded = unquote(path, errors="replace")
        if decoded == path:
            break
        path = decoded
    path = path.replace("\\", "/").replace("\x00", "")
    segments = []
    for seg in path.split("/"):
        seg = seg.split(";", 1)[0]
        if not seg.strip(" .") and seg.count(".") >= 2:
            seg = ".."
        segments.append(seg)
    path = re.sub("/+", "/", "/".join(segments))
    normal = posixpath.normpath(path or "/")
    return normal


TRICKY_URLS = st.builds(
    lambda scheme, host, port, segments, slash, tail: (
        f"{scheme}://{host}{port}/" + "/".join(segments) + slash + tail
    ),
    SCHEMES,
    HOSTS,
    PORTS,
    st.one_of(
        st.lists(SEGMENTS, max_size=6),
        st.lists(SEGMENTS, max_size=6).map(lambda rest: ["safe", *rest]),
        st.lists(SEGMENTS, max_size=6).map(lambda rest: ["safe", "x", *rest]),
    ),
    st.sampled_from(["", "/"]),
    st.sampled_from(["", "?q=1", "#frag", "?/../admin", "#/../admin"]),
)


@FUZZ
@given(TRICKY_URLS)
def test_no_trick_gets_outside_the_pattern(url: str) -> None:
    allowlist = Allowlist([PATTERN])
    try:
        n = normalize_url(url)
    except VultrinoError:
        return
    if allowlist.find("GET", n) is None:
        return
    # Reported as matching: every independent reading must agree.
    assert (n.scheme, n.host, n.port) == ("http", "good.example", 8080), url
    split = urlsplit(url)
    # Python's own IDNA 2003 codec: a second, independent reading of non-ASCII dots.
    assert (split.hostname or "").encode("idna").decode().rstrip(".") == "good.example", url
    assert split.port == 8080, url
    try:
        theirs = httpx.URL(url)
    except httpx.InvalidURL:
        theirs = None
    if theirs is not None:
        assert theirs.host.rstrip(".") == "good.example", url
        assert theirs.port == 8080, url
        assert theirs.userinfo == b"", url
    event("reported as matching")
    hostile = paranoid_path(n.url)  # what the server receives
    assert hostile == "/safe" or hostile.startswith("/safe/"), (url, hostile)
    assert n.path == "/safe" or n.path.startswith("/safe/"), url


@pytest.mark.parametrize(
    "url",
    [
        "http://good.example:8080/safe/..%2F..%2Fadmin",
        "http://good.example:8080/safe/%252e%252e/admin",
        "http://good.example:8080/safe/..;/admin",
        "http://good.example:8080@evil.example/safe/",
        "http://evil.example#@good.example:8080/safe/",
    ],
)
def test_known_tricks_are_refused(url: str) -> None:
    try:
        n = normalize_url(url)
    except VultrinoError:
        return
    assert Allowlist([PATTERN]).find("GET", n) is None
