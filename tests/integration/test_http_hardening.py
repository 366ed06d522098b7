"""Red-team findings against the built-in HTTP plugin, each replayed against a real hostile HTTP
server on 127.0.0.1 (docs/security.md, "Red-team findings: HTTP and scrubbing").

- A body in a Content-Encoding Vultrino cannot decode would come back raw, unscrubbed: it is an
  error now, and Vultrino alone decides what Accept-Encoding says.
- A compression bomb (and stacked encodings) inflated in one go before the size cap applied:
  decoding is incremental now, so memory stays near the cap (measured with tracemalloc).
- Headers that make a server run another method or path than the allowlist checked, or return
  a secret piecewise, are refused before any I/O.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import tracemalloc
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.localhttp import LocalServer, serving
from vultrino.errors import ActionFailedError, ParameterError
from vultrino.plugins.base import CredentialView
from vultrino.plugins.http import HttpPlugin

SECRET = "hk-9Zq4Lr2Vt7Wm3Xp8"
CAP = 1024 * 1024  # the plugin's response cap in these tests
MiB = 1024 * 1024


def _deflate(data: bytes, *, raw: bool = False) -> bytes:
    obj = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return obj.compress(data) + obj.flush()


def _gzip_zeros(n: int) -> bytes:
    """``n`` zero bytes, gzip-compressed without ever holding them in memory."""
    obj = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    out = [obj.compress(block) for _ in range(n // MiB)]
    return b"".join(out) + obj.flush()


class Hostile(LocalServer):
    """Serves ``bodies[path] = (Content-Encoding, bytes)``; ``/reflect`` echoes the
    Authorization header it got, encoded as ``?enc=`` asks. Records every request."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.requests: list[dict[str, Any]] = []
        self.bodies: dict[str, tuple[str, bytes]] = {}


class _Handler(BaseHTTPRequestHandler):
    server: Hostile

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(
            {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        )
        path, _, query = self.path.partition("?")
        if path == "/reflect":
            plain = f'{{"you_sent": "{self.headers.get("Authorization", "")}"}}'.encode()
            enc = query.partition("enc=")[2]
            coded = {
                "gzip": gzip.compress(plain),
                "deflate": _deflate(plain),
                "rawdeflate": _deflate(plain, raw=True),
                "gzip,deflate": _deflate(gzip.compress(plain)),
                "br": _deflate(plain),  # anything Vultrino does not decode
                "zstd": _deflate(plain),
            }[enc]
            header = "deflate" if enc == "rawdeflate" else enc.replace(",", ", ")
            self._send(header, coded)
        elif path in self.server.bodies:
            self._send(*self.server.bodies[path])
        else:
            self._send("", b"not found", 404)

    do_POST = do_DELETE = do_PUT = do_GET

    def _send(self, encoding: str, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up on a bomb: that is the point
            self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[Hostile]:
    with serving(Hostile()) as srv:
        yield srv


@pytest.fixture
def plugin() -> Iterator[HttpPlugin]:
    p = HttpPlugin(max_response_bytes=CAP)
    yield p
    p.close()


def cred(server: Hostile) -> CredentialView:
    return CredentialView("svc", "bearer", {"token": SECRET}, allow=(f"GET {server.base}/*",))


def call(plugin: HttpPlugin, server: Hostile, path: str, **params: Any) -> Any:
    return plugin.execute("request", {"url": server.base + path, **params}, cred(server)).value


# --- 1. encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize("enc", ["gzip", "deflate", "rawdeflate", "gzip,deflate"])
def test_decodable_bodies_are_decoded_then_scrubbed(
    plugin: HttpPlugin, server: Hostile, enc: str
) -> None:
    result = call(plugin, server, f"/reflect?enc={enc}")
    assert result["body_encoding"] == "text"
    assert result["body"] == '{"you_sent": "Bearer [REDACTED]"}'
    assert server.requests[-1]["headers"]["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize("enc", ["br", "zstd"])
def test_an_undecodable_body_is_an_error_not_a_raw_leak(
    plugin: HttpPlugin, server: Hostile, enc: str
) -> None:
    with pytest.raises(ActionFailedError) as info:
        call(plugin, server, f"/reflect?enc={enc}")
    assert info.value.code == "failed"
    assert repr(enc) in str(info.value) and "no body is returned" in str(info.value)
    assert SECRET not in str(info.value)
    assert server.requests[-1]["headers"]["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize("name", ["Accept-Encoding", "accept-encoding", "ACCEPT-ENCODING"])
def test_agent_cannot_choose_the_encoding(plugin: HttpPlugin, server: Hostile, name: str) -> None:
    with pytest.raises(ParameterError) as info:
        call(plugin, server, "/reflect?enc=br", headers={name: "br"})
    assert f"header {name!r} cannot be set" in str(info.value)
    assert "encodings (gzip, deflate)" in str(info.value)
    assert server.requests == []


def test_a_body_that_is_not_what_its_encoding_says_is_an_error(
    plugin: HttpPlugin, server: Hostile
) -> None:
    server.bodies["/liar"] = ("gzip", b"this is not gzip at all")
    with pytest.raises(ActionFailedError, match="not valid gzip"):
        call(plugin, server, "/liar")


def test_multi_member_gzip_is_read_whole(plugin: HttpPlugin, server: Hostile) -> None:
    server.bodies["/members"] = ("gzip", gzip.compress(b"one ") + gzip.compress(b"two"))
    assert call(plugin, server, "/members")["body"] == "one two"


# --- 2. bombs ----------------------------------------------------------------------------------


def _peak_while(plugin: HttpPlugin, server: Hostile, fn: Any) -> tuple[int, BaseException | None]:
    """The peak of traced allocations while ``fn`` runs, and what it raised. A small request
    first, so importing and building the HTTP client is not counted."""
    call(plugin, server, "/reflect?enc=gzip")
    tracemalloc.start()
    try:
        try:
            fn()
            error: BaseException | None = None
        except BaseException as exc:
            error = exc
        return tracemalloc.get_traced_memory()[1], error
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_is_refused_with_memory_near_the_cap(
    plugin: HttpPlugin, server: Hostile
) -> None:
    # 64 MiB of zeros in ~64 KiB on the wire: a one-shot inflate would allocate all of it.
    server.bodies["/bomb"] = ("gzip", _gzip_zeros(64 * MiB))
    peak, error = _peak_while(plugin, server, lambda: call(plugin, server, "/bomb"))
    assert isinstance(error, ActionFailedError), error
    assert f"larger than {CAP} bytes" in str(error)
    assert peak < 3 * CAP, f"peak {peak} bytes for a {CAP}-byte cap"


def test_a_nested_bomb_is_refused_with_memory_near_the_cap(
    plugin: HttpPlugin, server: Hostile
) -> None:
    # gzip inside gzip: 256 MiB of zeros in a few hundred bytes.
    server.bodies["/nested"] = ("gzip, gzip", gzip.compress(_gzip_zeros(256 * MiB)))
    peak, error = _peak_while(plugin, server, lambda: call(plugin, server, "/nested"))
    assert isinstance(error, ActionFailedError), error
    assert f"larger than {CAP} bytes" in str(error)
    assert peak < 3 * CAP, f"peak {peak} bytes for a {CAP}-byte cap"


def test_more_than_two_encoding_layers_are_refused(plugin: HttpPlugin, server: Hostile) -> None:
    body = _deflate(gzip.compress(gzip.compress(b"{}")))
    server.bodies["/layers"] = ("gzip, gzip, deflate", body)
    with pytest.raises(ActionFailedError, match="stacks 3 Content-Encoding layers") as info:
        call(plugin, server, "/layers")
    assert info.value.code == "failed"


def test_a_body_just_under_the_cap_still_decodes(plugin: HttpPlugin, server: Hostile) -> None:
    data = b"a" * (CAP - 10)
    server.bodies["/fits"] = ("gzip", gzip.compress(data))
    assert len(call(plugin, server, "/fits")["body"]) == CAP - 10


# --- 4. headers that bypass the allowlist -------------------------------------------------------

REFUSED = [
    ("X-HTTP-Method-Override", "DELETE"),
    ("x-http-method", "DELETE"),
    ("X-METHOD-OVERRIDE", "PUT"),
    ("X-Original-URL", "/admin/delete"),
    ("x-rewrite-url", "/admin/delete"),
    ("X-Original-URI", "/admin"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-For", "127.0.0.1"),
    ("x-forwarded-proto", "https"),
    ("X-Forwarded-Prefix", "/admin"),
    ("Forwarded", "host=evil.example"),
    ("X-Host", "evil.example"),
    ("X-Original-Host", "evil.example"),
    ("Range", "bytes=0-3"),
    ("if-range", "etag"),
]


@pytest.mark.parametrize(("name", "value"), REFUSED)
def test_headers_that_bypass_the_allowlist_are_refused_before_any_io(
    plugin: HttpPlugin, server: Hostile, name: str, value: str
) -> None:
    with pytest.raises(ParameterError) as info:
        call(plugin, server, "/reflect?enc=gzip", headers={"Accept": "*/*", name: value})
    assert f"header {name!r} is refused" in str(info.value)
    assert "remove it" in str(info.value)
    assert server.requests == []


def test_ordinary_headers_still_pass(plugin: HttpPlugin, server: Hostile) -> None:
    call(plugin, server, "/reflect?enc=gzip", headers={"X-Request-Id": "r1", "Accept": "*/*"})
    assert server.requests[-1]["headers"]["x-request-id"] == "r1"


def test_a_reflected_secret_in_an_undecoded_body_never_reaches_the_caller(
    plugin: HttpPlugin, server: Hostile
) -> None:
    """The issue's exact replay: ``Accept-Encoding: br`` is refused, and even a server that
    answers br unasked gets no body through (the encoded secret would pass the scrubber)."""
    hidden = base64.b64encode(_deflate(f"Bearer {SECRET}".encode())).decode()
    for attempt in ({"headers": {"Accept-Encoding": "br"}}, {}):
        try:
            result = call(plugin, server, "/reflect?enc=br", **attempt)
        except (ParameterError, ActionFailedError) as exc:
            assert SECRET not in str(exc)
        else:
            pytest.fail(f"a br body came back: {result['body'][:60]} (hidden: {hidden[:20]})")
