"""A hostile review of `vultrino serve --proxy` (docs/security.md, "Review of the forward
proxy, the new manifest keys and `vultrino gpg`"): each test replays a finding against a real
``python -m vultrino serve --proxy`` process and a real upstream on 127.0.0.1, with raw
sockets where the attack is in the bytes of the request itself."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mcp_helpers import HANG_GUARD_S, PASSWORD, McpHome, make_home
from tests.e2e.serve_helpers import Server, make_key, serve
from tests.e2e.test_proxy import SECRET, Upstream, _peak_rss, _proxy_url
from tests.localhttp import serving

#: a head this long was held whole before (and joined again for every piece it came in)
HUGE = 64 * 1024 * 1024
PIECE = 64 * 1024


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with serving(Upstream()) as up:
        yield up


@pytest.fixture
def home(isolated_home: Path, upstream: Upstream) -> McpHome:
    from vultrino.core import Vultrino

    home = make_home(isolated_home)
    with Vultrino.open(home.root, PASSWORD) as v:
        # the credential sends its secret in a header of its own, so an Authorization the
        # client sends is not replaced by it
        v.add_credential(
            "hk",
            "api_key",
            {"key": SECRET, "header": "X-Api-Key"},
            allow=[f"{upstream.base}/*"],
        )
    home.secrets.append(SECRET)
    return home


def _address(url: str) -> tuple[str, int]:
    host, _, port = url.split("//", 1)[1].split("/", 1)[0].rpartition(":")
    return host, int(port)


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(HANG_GUARD_S)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


def _flood_head(url: str) -> tuple[bytes, int]:
    """Send a request whose one header never ends (up to HUGE bytes); the server's answer and
    how many bytes it took before the server stopped reading."""
    with socket.create_connection(_address(url), timeout=HANG_GUARD_S) as sock:
        sock.sendall(b"GET /https://example.com/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = 0
        piece = b"a" * PIECE
        try:
            while sent < HUGE:
                sock.sendall(piece)
                sent += PIECE
        except OSError:  # the server answered and closed: the rest is refused
            pass
        return _answer(sock), sent


def _ports(s: Server) -> list[str]:
    return [_proxy_url(s), s.url]


def test_a_huge_request_head_is_refused_in_bounded_memory(home: McpHome) -> None:
    """Found in review: uvicorn's httptools protocol held a request's header whole, however
    long, before any key was looked at: 200 MiB of one header grew the server by 393 MiB and
    took two minutes of CPU (the pieces are joined again for every piece)."""
    with serve(home, "--proxy-listen", "127.0.0.1:0") as s:
        before = _peak_rss(s.proc.pid)
        for url in _ports(s):  # the proxy's port and the REST API's
            answer, sent = _flood_head(url)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            assert b"too large" in answer
            assert sent < 4 * 1024 * 1024  # refused after about 64 KiB, not read to the end
        assert _peak_rss(s.proc.pid) - before < 16 * 1024 * 1024
        # a head inside the bound still works (32 KiB of headers: the proxy asks for its key)
        with socket.create_connection(_address(_proxy_url(s)), timeout=HANG_GUARD_S) as sock:
            sock.sendall(
                b"GET /https://example.com/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(32))
                + b"\r\n"
            )
            assert _answer(sock).startswith(b"HTTP/1.1 407 ")


def test_a_head_that_trickles_in_is_cut_off(home: McpHome) -> None:
    """Found in review: a client sending its head a byte at a time (slowloris) held its
    connection for as long as it liked; `[server] header_timeout_s` (1 s here) now ends it
    with 408."""
    (Path(home.root) / "config.toml").write_text("[server]\nheader_timeout_s = 1\n")
    with serve(home, "--proxy-listen", "127.0.0.1:0") as s:
        for url in _ports(s):
            with socket.create_connection(_address(url), timeout=HANG_GUARD_S) as sock:
                sock.sendall(b"GET /https://example.com/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                started = time.monotonic()
                answer = b""
                try:
                    while not answer and time.monotonic() - started < HANG_GUARD_S:
                        sock.sendall(b"X")  # a byte at a time, never the end of the head
                        sock.settimeout(0.2)
                        try:
                            answer = sock.recv(65536)
                        except TimeoutError:
                            continue
                except OSError:  # closed while sending
                    answer = answer or _answer(sock)
                assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_a_bad_header_timeout_is_a_config_error(home: McpHome) -> None:
    (Path(home.root) / "config.toml").write_text("[server]\nheader_timeout_s = 0\n")
    r = home.cli("serve", "--bind", "127.0.0.1:0")
    assert r.returncode != 0
    assert "server.header_timeout_s: must be positive, got 0" in r.stderr


def _get(proxy: str, path: str, headers: dict[str, str]) -> bytes:
    with socket.create_connection(_address(proxy), timeout=HANG_GUARD_S) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{head}\r\n".encode()
        )
        return _answer(sock)


def test_the_proxy_key_is_never_sent_upstream(home: McpHome, upstream: Upstream) -> None:
    """Found in review: with the key in Proxy-Authorization, an SDK's `api_key` setting sent
    it again as `Authorization: Bearer vk_…` (or in a header of its own), and the proxy passed
    that on to the upstream, which could then use the key at the proxy itself."""
    key = make_key(home, "tool", "executor")
    other = make_key(home, "other", "executor")
    with serve(home, "--proxy-listen", "127.0.0.1:0") as s:
        proxy = _proxy_url(s)
        for extra in (
            {"Authorization": f"Bearer {key}"},
            {"Authorization": f"Bearer {other}"},  # any Vultrino key, not only the caller's
            {"Api-Key": key},
            {"X-Custom": f"token={key}"},
        ):
            upstream.seen.clear()
            answer = _get(
                proxy,
                f"{upstream.base}/x/k",
                {"X-Vultrino-Credential": "hk", "Proxy-Authorization": f"Bearer {key}", **extra},
            )
            assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]  # the upstream answered
            (seen,) = upstream.seen
            sent = seen["headers"]
            assert isinstance(sent, dict)
            assert sent["x-api-key"] == SECRET  # the credential was used
            assert not any(key in v or other in v for v in sent.values()), sent
        # the client's own Authorization, not a Vultrino key, is still passed on
        upstream.seen.clear()
        _get(
            proxy,
            f"{upstream.base}/x/k",
            {
                "X-Vultrino-Credential": "hk",
                "X-Vultrino-Key": key,
                "Authorization": "Basic dXNlcjpwYXNz",
            },
        )
        (seen,) = upstream.seen
        assert isinstance(seen["headers"], dict)
        assert seen["headers"]["authorization"] == "Basic dXNlcjpwYXNz"
