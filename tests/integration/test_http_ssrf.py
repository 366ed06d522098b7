"""The SSRF guard of the HTTP plugin (issue 21; docs/http.md, "Private addresses").

Under a broad pattern (``*``, ``*.`` wildcards) a request may not reach a loopback, private,
link-local or otherwise non-public address — not as a literal, not through a DNS name, not by
rebinding, not on a redirect hop, not as the oauth2 token endpoint — unless a pattern names the
host exactly.

Every test runs under ``guard``: at the socket layer it records every connect and blocks any to
an address that is not loopback, and it refuses every name lookup but ``localhost``, so no
packet leaves the machine even if the code under test were wrong. Made-up names resolve through
a stub resolver handed to the client, to 127.0.0.2 (a real server listens there) or to a
public address whose connect the guard then blocks.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import pytest

from tests.localhttp import serving
from vultrino._net import make_client
from vultrino.errors import AccessDeniedError, ActionFailedError
from vultrino.plugins.base import ActionResult, CredentialView
from vultrino.plugins.http import HttpPlugin

TOKEN = "t-ssrf-guard-5Kq2"
PUBLIC = "8.8.8.8"  # never reached: the guard blocks the connect


@dataclass
class Guard:
    connects: list[tuple[str, int]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)

    def reached(self, host: str) -> list[tuple[str, int]]:
        return [c for c in self.connects if c[0] == host]


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch) -> Guard:
    seen = Guard()
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple):
            seen.connects.append((str(address[0]), int(address[1])))
            if not _loopback(str(address[0])):
                raise ConnectionRefusedError(f"test guard: no connect to {address[0]}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        raise AssertionError(f"test guard: connect_ex({address!r}) is not expected")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        seen.lookups.append(text)
        try:
            ipaddress.ip_address(text)
        except ValueError:
            if text != "localhost":
                raise socket.gaierror(socket.EAI_NONAME, "test guard: no real DNS") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


class Stub:
    """A resolver: each name answers its queued answers in turn, the last one from then on."""

    def __init__(self, answers: dict[str, Sequence[Sequence[str]]]) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        queue = self.answers[host]
        return list(queue.pop(0) if len(queue) > 1 else queue[0])


class Spy(ThreadingHTTPServer):
    """A keep-alive server on ``host`` that records paths; ``/redirect?to=URL`` redirects,
    ``POST /token`` issues an oauth2 token, anything else echoes the path."""

    daemon_threads = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.paths: list[str] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def base(self) -> str:
        return f"http://{self.server_address[0]}:{self.port}"


class _Handler(BaseHTTPRequestHandler):
    server: Spy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with self.server.lock:
            self.server.paths.append(self.path)
        if self.path.startswith("/redirect?to="):
            self._send(302, b"", Location=unquote(self.path.partition("=")[2]))
        elif self.path == "/token":
            token = {"access_token": "at-ssrf-91xz", "token_type": "Bearer", "expires_in": 3600}
            self._send(200, json.dumps(token).encode())
        else:
            self._send(200, json.dumps({"path": self.path}).encode())

    do_POST = do_GET

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def spy() -> Iterator[Spy]:
    """A server on 127.0.0.2, the address the test names resolve to."""
    with serving(Spy("127.0.0.2")) as srv:
        yield srv


@pytest.fixture
def home_server() -> Iterator[Spy]:
    """A server on 127.0.0.1, reached by its literal address."""
    with serving(Spy("127.0.0.1")) as srv:
        yield srv


def plugin_with(stub: Stub | None) -> HttpPlugin:
    return HttpPlugin(client=make_client(resolver=stub))


@pytest.fixture
def plugins() -> Iterator[list[HttpPlugin]]:
    made: list[HttpPlugin] = []
    yield made
    for p in made:
        p.close()


def make(plugins: list[HttpPlugin], stub: Stub | None = None) -> HttpPlugin:
    p = plugin_with(stub)
    plugins.append(p)
    return p


def cred(allow: Sequence[str], type_: str = "bearer", **fields: str) -> CredentialView:
    values = fields or {"token": TOKEN}
    return CredentialView(alias="wide", type=type_, fields=values, allow=tuple(allow))


def run(plugin: HttpPlugin, c: CredentialView, url: str, **params: Any) -> ActionResult:
    return plugin.execute("request", {"url": url, "timeout": 10, **params}, c)


def closed_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --- literal addresses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is in 169.254.0.0/16"),
        ("http://10.0.0.1/admin", "10.0.0.1 is in 10.0.0.0/8"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is in fc00::/7"),
        ("https://100.64.0.1/", "100.64.0.1 is in 100.64.0.0/10"),
        ("http://0.0.0.0:8080/", "0.0.0.0 is in 0.0.0.0/8"),
        ("http://[::1]:8080/", "::1 is in ::1/128"),
        ("http://[64:ff9b::a9fe:a9fe]/", "the NAT64 form of 169.254.169.254"),
    ],
)
def test_literal_non_public_addresses_under_star_are_refused_without_connecting(
    plugins: list[HttpPlugin], guard: Guard, url: str, shown: str
) -> None:
    stub = Stub({})
    with pytest.raises(AccessDeniedError, match="Nothing was sent") as info:
        run(make(plugins, stub), cred(["*"]), url)
    assert shown in str(info.value)
    assert "name it exactly: --allow 'http" in str(info.value)
    assert guard.connects == []
    assert stub.calls == [] and guard.lookups == []  # a literal is never looked up


def test_ipv4_mapped_loopback_cannot_reach_a_loopback_server(
    plugins: list[HttpPlugin], guard: Guard, home_server: Spy
) -> None:
    url = f"http://[::ffff:127.0.0.1]:{home_server.port}/x"
    with pytest.raises(AccessDeniedError, match=r"IPv4-mapped form of 127\.0\.0\.1"):
        run(make(plugins), cred(["*"]), url)
    assert guard.connects == [] and home_server.paths == []


def test_a_literal_named_exactly_is_reached(
    plugins: list[HttpPlugin], guard: Guard, home_server: Spy
) -> None:
    result = run(make(plugins), cred([f"{home_server.base}/*"]), f"{home_server.base}/ok")
    assert result.value["status"] == 200
    assert home_server.paths == ["/ok"]
    assert guard.reached("127.0.0.1") == [("127.0.0.1", home_server.port)]


# --- names ----------------------------------------------------------------------------------


def test_a_name_resolving_to_loopback_under_a_wildcard_is_refused(
    plugins: list[HttpPlugin], guard: Guard, spy: Spy
) -> None:
    stub = Stub({"svc.internal.test": [["127.0.0.2"]]})
    url = f"http://svc.internal.test:{spy.port}/x"
    with pytest.raises(AccessDeniedError) as info:
        run(make(plugins, stub), cred([f"http://*.internal.test:{spy.port}/*"]), url)
    message = str(info.value)
    assert "svc.internal.test resolves to 127.0.0.2, which is in 127.0.0.0/8 (loopback)" in message
    assert f"--allow 'http://svc.internal.test:{spy.port}/*'" in message
    assert guard.connects == [] and spy.paths == []
    assert stub.calls == ["svc.internal.test"]


def test_the_exact_host_reaches_a_loopback_server_with_one_lookup(
    plugins: list[HttpPlugin], guard: Guard, spy: Spy
) -> None:
    stub = Stub({"svc.internal.test": [["127.0.0.2"]]})
    url = f"http://svc.internal.test:{spy.port}/x"
    result = run(make(plugins, stub), cred([f"http://svc.internal.test:{spy.port}/*"]), url)
    assert result.value["status"] == 200
    assert spy.paths == ["/x"]
    assert stub.calls == ["svc.internal.test"]
    assert guard.connects == [("127.0.0.2", spy.port)]  # the address resolved, and no other


def test_localhost_named_exactly_is_reached_and_under_star_is_not(
    plugins: list[HttpPlugin], guard: Guard, home_server: Spy
) -> None:
    plugin = make(plugins)  # the system resolver: only 'localhost' passes the guard
    url = f"http://localhost:{home_server.port}/here"
    assert run(plugin, cred([f"http://localhost:{home_server.port}/*"]), url).value["status"] == 200
    with pytest.raises(AccessDeniedError, match="localhost resolves to"):
        run(plugin, cred(["*"]), url)
    assert home_server.paths == ["/here"]


def test_every_address_of_a_name_must_be_public(
    plugins: list[HttpPlugin], guard: Guard, spy: Spy
) -> None:
    stub = Stub({"mixed.test": [[PUBLIC, "127.0.0.2"]]})
    with pytest.raises(AccessDeniedError, match=re.escape("mixed.test resolves to 127.0.0.2")):
        run(make(plugins, stub), cred(["*"]), f"http://mixed.test:{spy.port}/x")
    assert guard.connects == [] and spy.paths == []


def test_dns_rebinding_cannot_pass(plugins: list[HttpPlugin], guard: Guard, spy: Spy) -> None:
    # The resolver answers a public address, then a loopback one. A check that looked the
    # name up and a connect that looked it up again would reach 127.0.0.2; here the one
    # lookup's address is the one connected to (the guard blocks that public connect).
    stub = Stub({"rebind.test": [[PUBLIC], ["127.0.0.2"]]})
    plugin = make(plugins, stub)
    url = f"http://rebind.test:{spy.port}/secret"
    with pytest.raises(ActionFailedError, match=re.escape(f"test guard: no connect to {PUBLIC}")):
        run(plugin, cred(["*"]), url)
    assert stub.calls == ["rebind.test"]
    assert guard.connects == [(PUBLIC, spy.port)]
    # Asked again, the name now resolves to loopback: refused before any connect.
    with pytest.raises(AccessDeniedError, match=re.escape("rebind.test resolves to 127.0.0.2")):
        run(plugin, cred(["*"]), url)
    assert stub.calls == ["rebind.test", "rebind.test"]
    assert guard.connects == [(PUBLIC, spy.port)]
    assert spy.paths == []


def test_a_pooled_private_connection_never_serves_a_broad_pattern(
    plugins: list[HttpPlugin], guard: Guard, spy: Spy
) -> None:
    stub = Stub({"svc.internal.test": [["127.0.0.2"]]})
    plugin = make(plugins, stub)
    url = f"http://svc.internal.test:{spy.port}/x"
    exact = cred([f"http://svc.internal.test:{spy.port}/*"])
    run(plugin, exact, url)
    run(plugin, exact, url)
    assert guard.connects == [("127.0.0.2", spy.port)]  # kept alive and reused
    with pytest.raises(AccessDeniedError, match=re.escape("127.0.0.0/8")):
        run(plugin, cred(["*"]), url)
    assert spy.paths == ["/x", "/x"]


# --- redirects ------------------------------------------------------------------------------


def test_a_redirect_to_the_metadata_address_is_refused(
    plugins: list[HttpPlugin], guard: Guard, home_server: Spy
) -> None:
    c = cred([f"{home_server.base}/*", "*"])
    target = "http://169.254.169.254/latest/meta-data/iam/"
    with pytest.raises(AccessDeniedError, match=r"169\.254\.169\.254 is in 169\.254\.0\.0/16"):
        run(make(plugins), c, f"{home_server.base}/redirect?to={target}")
    assert len(home_server.paths) == 1
    assert {host for host, _ in guard.connects} == {"127.0.0.1"}


def test_a_redirect_to_a_name_resolving_to_loopback_is_refused(
    plugins: list[HttpPlugin], guard: Guard, home_server: Spy, spy: Spy
) -> None:
    stub = Stub({"hop.internal.test": [["127.0.0.2"]]})
    c = cred([f"{home_server.base}/*", f"http://*.internal.test:{spy.port}/*"])
    target = f"http://hop.internal.test:{spy.port}/next"
    with pytest.raises(
        AccessDeniedError, match=re.escape("hop.internal.test resolves to 127.0.0.2")
    ):
        run(make(plugins, stub), c, f"{home_server.base}/redirect?to={target}")
    assert spy.paths == []
    assert guard.reached("127.0.0.2") == []


def test_a_redirect_back_through_an_ipv4_mapped_address_is_refused(
    plugins: list[HttpPlugin], guard: Guard, home_server: Spy
) -> None:
    c = cred([f"{home_server.base}/*", "*"])
    target = f"http://[::ffff:127.0.0.1]:{home_server.port}/again"
    with pytest.raises(AccessDeniedError, match="IPv4-mapped"):
        run(make(plugins), c, f"{home_server.base}/redirect?to={target}")
    assert len(home_server.paths) == 1  # the redirect, never /again


# --- the oauth2 token URL -------------------------------------------------------------------


def oauth(token_url: str) -> dict[str, str]:
    return {"token_url": token_url, "client_id": "c-1", "client_secret": "cs-ssrf-7Yq3"}


def test_a_token_url_resolving_to_loopback_is_refused(
    plugins: list[HttpPlugin], guard: Guard, spy: Spy
) -> None:
    stub = Stub({"auth.internal.test": [["127.0.0.2"]]})
    token_url = f"https://auth.internal.test:{spy.port}/token"
    c = cred(["https://*.internal.test/*"], "oauth2", **oauth(token_url))
    with pytest.raises(AccessDeniedError) as info:
        run(make(plugins, stub), c, "https://api.internal.test/v1/me")
    message = str(info.value)
    assert message.startswith(f"oauth2 token request POST {token_url} refused")
    assert "auth.internal.test resolves to 127.0.0.2" in message
    assert "write the token_url with the IP address" in message
    assert guard.connects == [] and spy.paths == []
    assert stub.calls == ["auth.internal.test"]  # the API host was never looked up


def test_a_token_host_named_exactly_passes_the_guard(
    plugins: list[HttpPlugin], guard: Guard
) -> None:
    port = closed_port("127.0.0.2")  # nothing listens: the attempt itself is the proof
    stub = Stub({"auth.internal.test": [["127.0.0.2"]]})
    token_url = f"https://auth.internal.test:{port}/token"
    allow = ["https://*.internal.test/*", f"https://auth.internal.test:{port}/token"]
    c = cred(allow, "oauth2", **oauth(token_url))
    with pytest.raises(ActionFailedError, match="could not connect"):
        run(make(plugins, stub), c, "https://api.internal.test/v1/me")
    assert guard.connects == [("127.0.0.2", port)]


def test_a_literal_token_url_and_an_exact_api_host_work_end_to_end(
    plugins: list[HttpPlugin], guard: Guard, spy: Spy
) -> None:
    stub = Stub({"api.internal.test": [["127.0.0.2"]]})
    c = cred([f"http://api.internal.test:{spy.port}/v1/*"], "oauth2", **oauth(f"{spy.base}/token"))
    result = run(make(plugins, stub), c, f"http://api.internal.test:{spy.port}/v1/me")
    assert result.value["status"] == 200
    assert spy.paths == ["/token", "/v1/me"]
    assert stub.calls == ["api.internal.test"]
