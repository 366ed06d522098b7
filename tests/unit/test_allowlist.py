"""URL normalisation, allowlist pattern parsing and matching (vultrino._allowlist)."""

from __future__ import annotations

import pytest

from vultrino._allowlist import (
    Allowlist,
    NormalizedURL,
    hostile_path,
    normalize_pattern,
    normalize_url,
    parse_pattern,
    remove_dot_segments,
    validate_patterns,
)
from vultrino.errors import AccessDeniedError, CredentialValidationError, ParameterError

# --- URL normalisation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.github.com/user", ("https", "api.github.com", 443, "/user", "")),
        ("HTTPS://API.GitHub.COM:443/User", ("https", "api.github.com", 443, "/User", "")),
        ("http://example.com", ("http", "example.com", 80, "/", "")),
        ("http://example.com:", ("http", "example.com", 80, "/", "")),
        ("http://example.com:08080/", ("http", "example.com", 8080, "/", "")),
        ("http://example.com./x", ("http", "example.com", 80, "/x", "")),
        ("http://example.com?q", ("http", "example.com", 80, "/", "q")),
        ("http://h/a/./b/../c", ("http", "h", 80, "/a/c", "")),
        ("http://h/a/b/..", ("http", "h", 80, "/a/", "")),
        ("http://h/../../x", ("http", "h", 80, "/x", "")),
        ("http://h/%2e%2E/x/%2E", ("http", "h", 80, "/x/", "")),
        ("http://h/%7e%41%2d", ("http", "h", 80, "/~A-", "")),
        ("http://h/a%2fb%3a", ("http", "h", 80, "/a%2Fb%3A", "")),
        ("http://h/a b\u00e9", ("http", "h", 80, "/a%20b%C3%A9", "")),
        ("http://h/p?q=a b&r=%7e#frag", ("http", "h", 80, "/p", "q=a%20b&r=~")),
        ("http://h/p#frag?x", ("http", "h", 80, "/p", "")),
        ("https://b\u00fccher.example/", ("https", "xn--bcher-kva.example", 443, "/", "")),
        ("https://B\u00dcCHER.example/", ("https", "xn--bcher-kva.example", 443, "/", "")),
        ("https://\uff41pi.example/", ("https", "api.example", 443, "/", "")),  # fullwidth a
        ("http://[::1]:8080/", ("http", "::1", 8080, "/", "")),
        ("http://[0:0::0:1]/", ("http", "::1", 80, "/", "")),
        ("http://127.0.0.1:8080/x", ("http", "127.0.0.1", 8080, "/x", "")),
        ("  http://h/  ", ("http", "h", 80, "/", "")),
    ],
)
def test_normalize_url(url: str, expected: tuple[str, str, int, str, str]) -> None:
    n = normalize_url(url)
    assert (n.scheme, n.host, n.port, n.path, n.query) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("api.github.com/user", "absolute"),
        ("ftp://h/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("https:h/x", "'//'"),
        ("http:///x", "host is empty"),
        ("http://h:0/", "out of range"),
        ("http://h:65536/", "out of range"),
        ("http://h:8o/", "not a number"),
        ("http://h:-1/", "not a number"),
        ("http://a:1:2/", "more than one ':'"),
        ("http://[::1/", "unclosed"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("http://[::1]x/", "after the IPv6"),
        ("http://[zz]/", "IPv6"),
        ("http://h%2ecom/", "percent-encoded"),
        ("http://a..b/", "valid host"),
        ("http://-a.com/", "valid host"),
        ("http://a b/", "valid host"),
        ("http://127.1/", "ambiguous numeric"),
        ("http://0x7f.0.0.1/", "ambiguous numeric"),
        ("http://2130706433/", "ambiguous numeric"),
        ("http://0177.0.0.1/", "ambiguous numeric"),
        ("http://256.0.0.1/", "ambiguous numeric"),
        ("http://1.2.3.4.5/", "ambiguous numeric"),
        ("http://h/a%zz", "percent-escape"),
        ("http://h/a%", "percent-escape"),
        ("http://h/?q=100%", "percent-escape"),
        ("http://h/a%00b", "control"),
        ("http://h/a%0ab", "control"),
        ("http://h/a\nb", "control"),
        ("http://h\\@evil/", "backslash"),
        ("http://h/\ud800", "surrogate"),
        ("http://xn--zz.example/", "punycode"),
        ("http://" + "a" * 64 + ".com/", "valid host"),
    ],
)
def test_normalize_url_rejects(url: str, reason: str) -> None:
    with pytest.raises(ParameterError, match=reason):
        normalize_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://user@h/",
        "http://user:hunter22@h/",
        "http://h:80@evil.example/",
        "http://good.example@evil.example/",
        "http://@h/",
    ],
)
def test_userinfo_is_refused_and_never_echoed(url: str) -> None:
    with pytest.raises(AccessDeniedError, match="userinfo") as info:
        normalize_url(url)
    assert "hunter22" not in str(info.value)
    assert "***@" in str(info.value)


def test_normalized_url_rendering() -> None:
    n = normalize_url("https://h:443/a?k=v")
    assert n.url == "https://h/a?k=v"
    assert n.display == "https://h/a"
    assert n.origin == ("https", "h", 443)
    assert normalize_url("http://[::1]:81/").url == "http://[::1]:81/"
    assert NormalizedURL("http", "h", 80, "/" + "x" * 300).display.endswith("...")


def test_non_string_url() -> None:
    with pytest.raises(ParameterError, match="string"):
        normalize_url(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b/c/./../../g", "/a/g"),
        ("/mid/content=5/../6", "/mid/6"),
        ("/..", "/"),
        ("/.", "/"),
        ("/a/..", "/"),
        ("/a/b/.", "/a/b/"),
        ("/a//b/../c", "/a//c"),
    ],
)
def test_remove_dot_segments(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/users", b"/v1/users"),
        ("/v1/", b"/v1/"),
        ("/", b"/"),
        ("/v1/..%2Fadmin", b"/admin"),
        ("/v1/%252e%252e/admin", b"/admin"),
        ("/v1/..%5Cadmin", b"/admin"),
        ("/v1/..;x/admin", b"/admin"),
        ("/v1/.. /admin", b"/admin"),
        ("/v1/.../admin", b"/admin"),
        ("/v1//admin", b"/v1/admin"),
        ("/v1/a%2Fb", b"/v1/a/b"),
        ("/v1/x/..", b"/v1/"),
    ],
)
def test_hostile_path(path: str, expected: bytes) -> None:
    assert hostile_path(path) == expected


# --- patterns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "canonical"),
    [
        ("*", "*"),
        ("  *  ", "*"),
        ("https://api.github.com/*", "https://api.github.com/*"),
        ("https://api.github.com", "https://api.github.com/*"),
        ("https://api.github.com/", "https://api.github.com/"),
        ("HTTPS://API.GITHUB.COM:443/repos/*", "https://api.github.com/repos/*"),
        ("http://127.0.0.1:8080/hooks/*", "http://127.0.0.1:8080/hooks/*"),
        ("https://h:8443/x", "https://h:8443/x"),
        ("get,POST https://api.example.com/v1/*", "GET,POST https://api.example.com/v1/*"),
        ("POST,GET,GET https://h/", "GET,POST https://h/"),
        ("GET *", "GET *"),
        ("https://*.example.com/*", "https://*.example.com/*"),
        ("https://h/v1*", "https://h/v1*"),
        ("https://h/%7euser/*", "https://h/~user/*"),
        ("https://h/a%20b/*", "https://h/a%20b/*"),
        ("https://h/\u00e9/*", "https://h/%C3%A9/*"),
        ("https://b\u00fccher.example/*", "https://xn--bcher-kva.example/*"),
        ("http://[::1]:9000/*", "http://[::1]:9000/*"),
    ],
)
def test_pattern_canonical_form(pattern: str, canonical: str) -> None:
    assert normalize_pattern(pattern) == canonical
    assert normalize_pattern(canonical) == canonical  # idempotent


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "empty"),
        ("api.github.com/*", "scheme://host"),
        ("ftp://h/*", "scheme"),
        ("https://h/*?x=1", "query"),
        ("https://h/#x", "fragment"),
        ("https://user@h/*", "userinfo"),
        ("https://*/*", "leading label"),
        ("https://api.*.com/*", "leading label"),
        ("https://*api.com/*", "leading label"),
        ("https://*.com/*", "two labels"),
        ("https://*.10.0.0.1/*", "two labels"),
        ("https://h/*/x", "very end"),
        ("https://h/a/../b/*", "'..'"),
        ("https://h/a/./b", "'..'"),
        ("https://h/a//b", "empty segments"),
        ("https://h/a%2Fb/*", "encoded"),
        ("https://h/a;b/*", "';'"),
        ("FETCH https://h/*", "HTTP methods"),
        ("GET https://h/* extra", "METHODS"),
        ("https://h:99999/*", "out of range"),
        ("https://127.1/*", "ambiguous"),
        ("https://h\\x/*", "backslash"),
    ],
)
def test_bad_patterns(pattern: str, reason: str) -> None:
    with pytest.raises(CredentialValidationError, match=reason) as info:
        parse_pattern(pattern)
    assert "docs/http.md" in str(info.value)


def test_validate_patterns_dedupes_in_order() -> None:
    assert validate_patterns(["https://B/*", "https://a/*", "https://b"]) == [
        "https://b/*",
        "https://a/*",
    ]
    assert validate_patterns([]) == []
    with pytest.raises(CredentialValidationError):
        validate_patterns(["https://ok/*", "nope"])


# --- matching --------------------------------------------------------------------------------


def allowed(patterns: list[str], url: str, method: str = "GET") -> bool:
    return Allowlist(patterns).find(method, normalize_url(url)) is not None


@pytest.mark.parametrize(
    ("pattern", "url", "ok"),
    [
        ("https://api.github.com/*", "https://api.github.com/user", True),
        ("https://api.github.com/*", "https://api.github.com:443/", True),
        ("https://api.github.com/*", "https://API.GITHUB.COM/user", True),
        ("https://api.github.com/*", "https://api.github.com./user", True),
        ("https://api.github.com/*", "http://api.github.com/user", False),
        ("https://api.github.com/*", "https://api.github.com:8443/user", False),
        ("https://api.github.com/*", "https://api.github.com.evil.com/", False),
        ("https://api.github.com/*", "https://evilapi.github.com/", False),
        ("https://api.github.com/*", "https://github.com/", False),
        ("http://h/*", "http://h:80/x", True),
        ("http://h:80/*", "http://h/x", True),
        ("https://h/v1/*", "https://h/v1/", True),
        ("https://h/v1/*", "https://h/v1", True),
        ("https://h/v1/*", "https://h/v1/a/b?c", True),
        ("https://h/v1/*", "https://h/v10", False),
        ("https://h/v1/*", "https://h/v1-admin", False),
        ("https://h/v1/*", "https://h/V1/x", False),
        ("https://h/v1/*", "https://h/v1/../admin", False),
        ("https://h/v1/*", "https://h/v1/%2e%2e/admin", False),
        ("https://h/v1/*", "https://h/v1/%2E%2E%2Fadmin", False),
        ("https://h/v1/*", "https://h/v1/..%2Fadmin", False),
        ("https://h/v1/*", "https://h/v1/..%2fadmin", False),
        ("https://h/v1/*", "https://h/v1/x/..%2F..%2Fadmin", False),
        ("https://h/v1/*", "https://h/v1/%252e%252e/admin", False),
        ("https://h/v1/*", "https://h/v1/%25252e%25252e/admin", False),
        ("https://h/v1/*", "https://h/v1/..%5Cadmin", False),
        ("https://h/v1/*", "https://h/v1/..;/admin", False),
        ("https://h/v1/*", "https://h/v1/..%3B/admin", False),
        ("https://h/v1/*", "https://h/v1/..%20/admin", False),
        ("https://h/v1/*", "https://h/v1/x/..%2Fy", True),  # stays inside /v1/
        ("https://h/v1/*", "https://h/v1/group%2Fproject", True),
        ("https://h/v1/*", "https://h/v1//x", True),
        ("https://h/v1*", "https://h/v1-admin", True),  # a bare prefix is a string prefix
        ("https://h/exact", "https://h/exact", True),
        ("https://h/exact", "https://h/exact/", False),
        ("https://h/exact", "https://h/exact?q=1", True),
        ("https://h/exact", "https://h/exact;x", False),
        ("https://h/exact", "https://h/%65xact", True),
        ("https://h/", "https://h", True),
        ("https://h/", "https://h/x", False),
        ("https://*.example.com/*", "https://a.example.com/", True),
        ("https://*.example.com/*", "https://a.b.example.com/", True),
        ("https://*.example.com/*", "https://example.com/", False),
        ("https://*.example.com/*", "https://aexample.com/", False),
        ("https://*.example.com/*", "https://a.example.com.evil/", False),
        ("https://h/~user/*", "https://h/%7Euser/x", True),
        ("https://h/a%20b/*", "https://h/a b/x", True),
        ("https://h/\u00e9/*", "https://h/%c3%a9/x", True),
        ("http://[::1]:9/*", "http://[0::1]:9/x", True),
        ("https://b\u00fccher.example/*", "https://xn--bcher-kva.example/", True),
        ("*", "http://anything.example:1234/x", True),
    ],
)
def test_matching(pattern: str, url: str, ok: bool) -> None:
    assert allowed([pattern], url) is ok


def test_methods() -> None:
    patterns = ["GET,HEAD https://h/read/*", "POST https://h/write"]
    assert allowed(patterns, "https://h/read/x", "GET")
    assert allowed(patterns, "https://h/read/x", "head")
    assert not allowed(patterns, "https://h/read/x", "POST")
    assert allowed(patterns, "https://h/write", "POST")
    assert not allowed(patterns, "https://h/write", "GET")
    assert allowed(["GET *"], "https://x/y", "GET")
    assert not allowed(["GET *"], "https://x/y", "DELETE")


def test_check_names_the_pattern_list_and_never_the_query() -> None:
    al = Allowlist(["https://a.example/*", "GET https://b.example/v1/*"], alias="gh")
    with pytest.raises(AccessDeniedError) as info:
        al.check("POST", normalize_url("https://c.example/x?token=abc123"))
    msg = str(info.value)
    assert "credential 'gh'" in msg
    assert "https://a.example/*, GET https://b.example/v1/*" in msg
    assert "POST https://c.example/x" in msg
    assert "abc123" not in msg
    assert info.value.plugin == "http"


def test_empty_allowlist_is_refused() -> None:
    with pytest.raises(AccessDeniedError, match="--allow PATTERN"):
        Allowlist([], alias="x").check("GET", normalize_url("https://a/"))


def test_too_deeply_encoded_path_matches_nothing() -> None:
    url = normalize_url("https://h/v1/" + "%25" * 1 + "25252525252e")
    assert Allowlist(["https://h/v1/*"]).find("GET", url) is None
    assert Allowlist(["*"]).find("GET", url) is not None


@pytest.mark.parametrize(
    "path",
    [
        "/v1/\u2025/admin",  # the two-dot leader, as typed
        "/v1/%E2%80%A5/admin",  # ... and percent-encoded
        "/v1/\uff0e\uff0e/admin",  # fullwidth full stops
        "/v1/\uff0e\uff0e\uff0fadmin",  # fullwidth solidus
        "/v1/\uff05\uff12\uff45\uff05\uff12\uff45/admin",  # fullwidth %2e%2e
    ],
)
def test_unicode_lookalikes_of_dots_and_slashes_do_not_leave_the_prefix(path: str) -> None:
    """A server that folds compatibility forms (NFKC) reads these as ``..`` and ``/``."""
    assert not allowed(["https://h.example/v1/*"], "https://h.example" + path)


def test_other_non_ascii_paths_stay_allowed() -> None:
    assert allowed(["https://h.example/v1/*"], "https://h.example/v1/caf\u00e9/\u2025x")
