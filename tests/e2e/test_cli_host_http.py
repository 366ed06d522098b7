"""HTTP through the host (world 1.3.0) through the real CLI: a plugin whose manifest declares
``[http]`` asks Vultrino to send a request with the credential's bearer token; a local server
on 127.0.0.1 checks the Authorization header, and the guest's answer never holds the token.

The guest is WAT (``tests/guests.http_send``): it sends one request, fixed when the test builds
it, and answers what the host gave back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests import guests
from tests.e2e.test_cli_paste import HANG_GUARD_S, PASSWORD
from tests.leakcheck import LeakCheck
from tests.localhttp import LocalServer, serving
from vultrino import _msgpack

TOKEN = "ghp_hostHttpToken7f3e9a1c55"
MANIFEST = """\
[plugin]
name = "{name}"
version = "1.0.0"
wasm_module = "guest.wasm"

[http]
hosts = {hosts}
auth = ["bearer"]

[[credential_types]]
name = "token"

[[credential_types.fields]]
name = "token"
type = "password"
required = true
secret = true
access = "host"

[[actions]]
name = "go"
credential_type = "token"
"""


class _Api(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        with self.server.lock:
            self.server.paths.append(f"{self.command} {self.path} {auth}")
        ok = auth == f"Bearer {TOKEN}"
        # an API that echoes the header back: the answer must reach the guest scrubbed
        body = json.dumps({"authorized": ok, "you_sent": auth}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


def vultrino(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        input=stdin,
        env={**os.environ, "VULTRINO_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


@pytest.fixture
def api() -> Iterator[LocalServer]:
    with serving(LocalServer(_Api)) as srv:
        yield srv


@pytest.fixture
def home(isolated_home: Path, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    leakcheck.add(PASSWORD, TOKEN)
    assert vultrino("init").returncode == 0
    return isolated_home


def _install(tmp_path: Path, name: str, request: dict[str, Any], hosts: str) -> None:
    src = tmp_path / name
    src.mkdir()
    (src / "plugin.toml").write_text(MANIFEST.format(name=name, hosts=hosts))
    (src / "guest.wasm").write_bytes(guests.http_send(_msgpack.packb(request)))
    r = vultrino("plugin", "install", str(src))
    assert r.returncode == 0, r.stderr
    assert "only to: " in r.stderr and "bearer" in r.stderr


def _add(alias: str, plugin: str, allow: str) -> None:
    r = vultrino(
        "add", "--alias", alias, "--type", f"plugin:{plugin}:token",
        "--field", "token=-", "--allow", allow, stdin=TOKEN,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_the_host_adds_the_token_and_the_guest_never_sees_it(
    home: Path, tmp_path: Path, api: LocalServer
) -> None:
    url = f"{api.base}/repos/o/r/issues?state=open"
    _install(tmp_path, "issues", {"auth": "bearer", "url": url}, '["127.0.0.1"]')
    info = vultrino("plugin", "info", "issues")
    assert "only to: 127.0.0.1" in info.stdout
    assert json.loads(vultrino("plugin", "info", "issues", "--json").stdout)["http"] == {
        "hosts": ["127.0.0.1"],
        "auth": ["bearer"],
    }
    _add("gh", "issues", f"{api.base}/repos/*")
    r = vultrino("request", "gh", "--action", "go", "--json")
    assert r.returncode == 0, r.stderr
    assert TOKEN not in r.stdout + r.stderr
    answer = json.loads(r.stdout)["ok"]
    assert answer["status"] == 200
    body = json.loads(answer["body"])
    # the header went out whole; what came back was scrubbed before the guest got it
    assert body == {"authorized": True, "you_sent": "Bearer [REDACTED]"}
    assert api.paths == [f"GET /repos/o/r/issues?state=open Bearer {TOKEN}"]


def test_outside_the_allowlist_or_the_declared_hosts_nothing_is_sent(
    home: Path, tmp_path: Path, api: LocalServer
) -> None:
    # declared host, but outside the credential's allowlist
    _install(tmp_path, "narrow", {"auth": "bearer", "url": f"{api.base}/admin"}, '["127.0.0.1"]')
    _add("n", "narrow", f"{api.base}/repos/*")
    r = vultrino("request", "n", "--action", "go", "--json")
    assert r.returncode == 0, r.stderr
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "denied" and "allowlist" in error["message"]
    # a host the manifest does not declare (localhost is 127.0.0.1, but not by that name)
    other = f"http://localhost:{api.server_address[1]}/repos/x"
    _install(tmp_path, "elsewhere", {"auth": "bearer", "url": other}, '["127.0.0.1"]')
    _add("e", "elsewhere", f"{api.base}/repos/*")
    error = json.loads(vultrino("request", "e", "--action", "go", "--json").stdout)["error"]
    assert error["code"] == "host-not-declared"
    # an auth scheme the manifest does not declare
    _install(
        tmp_path, "basic", {"auth": "basic_auth", "url": f"{api.base}/repos/x"}, '["127.0.0.1"]'
    )
    _add("b", "basic", f"{api.base}/repos/*")
    error = json.loads(vultrino("request", "b", "--action", "go", "--json").stdout)["error"]
    assert error["code"] == "unknown-auth"
    assert api.paths == []


def test_a_manifest_with_a_bad_http_table_is_refused(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "bad"
    src.mkdir()
    text = MANIFEST.format(name="bad", hosts='["https://api.github.com/*"]')
    (src / "plugin.toml").write_text(text.replace('auth = ["bearer"]', 'auth = ["api_key"]'))
    (src / "guest.wasm").write_bytes(guests.echo())
    r = vultrino("plugin", "install", str(src))
    assert r.returncode != 0
    assert "http.hosts[0]" in r.stderr and "is not a host name" in r.stderr
    assert "http.auth[0]" in r.stderr and "field(s) key" in r.stderr


HMAC_MANIFEST = """\
[plugin]
name = "exchange"
version = "1.0.0"
wasm_module = "guest.wasm"

[http]
hosts = ["127.0.0.1"]
auth = ["hmac_api_key"]

[[credential_types]]
name = "keys"

[[credential_types.fields]]
name = "api_key"
type = "password"
required = true
secret = true

[[credential_types.fields]]
name = "api_secret"
type = "password"
required = true
secret = true
access = "host"

[[actions]]
name = "go"
credential_type = "keys"
"""


def test_an_exchange_signature_from_a_host_only_secret(home: Path, tmp_path: Path) -> None:
    from tests.integration.test_http_hmac import API_KEY, API_SECRET, Exchange

    server = Exchange()
    with serving(server):
        url = f"{server.base}/api/v3/order"
        src = tmp_path / "exchange"
        src.mkdir()
        (src / "plugin.toml").write_text(HMAC_MANIFEST)
        request = {
            "auth": "hmac_api_key",
            "method": "POST",
            "url": url,
            "query": {"symbol": "LTCBTC"},
            "body": "quantity=1&price=0.1",
        }
        (src / "guest.wasm").write_bytes(guests.http_send(_msgpack.packb(request)))
        assert vultrino("plugin", "install", str(src)).returncode == 0
        (tmp_path / "key").write_text(API_KEY)
        (tmp_path / "secret").write_text(API_SECRET)
        r = vultrino(
            "add", "--alias", "bn", "--type", "plugin:exchange:keys",
            "--field", f"api_key=@{tmp_path / 'key'}",
            "--field", f"api_secret=@{tmp_path / 'secret'}",
            "--allow", f"{server.base}/api/*",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "this plugin never sees: api_secret" in r.stderr
        r = vultrino("request", "bn", "--action", "go", "--json")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)["ok"]
    assert answer["status"] == 200, answer
    verified = json.loads(answer["body"])
    assert verified["verified"] is True  # the server recomputed the signature itself
    stamp = dict(verified["params"])["timestamp"]
    # Binance's totalParams: the sorted query, then the body, concatenated
    assert verified["total"] == f"recvWindow=5000&symbol=LTCBTC&timestamp={stamp}" + (
        "quantity=1&price=0.1"
    )
    assert API_SECRET not in r.stdout + r.stderr


class _Slow(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.paths.append(self.path)
        import time

        time.sleep(15)  # past the plugin call's 5 s deadline
        try:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass


def test_a_request_is_cut_to_the_time_left_in_the_plugin_call(home: Path, tmp_path: Path) -> None:
    (home / "config.toml").write_text(
        "[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n\n[limits]\ndeadline_s = 5.0\n"
    )
    with serving(LocalServer(_Slow)) as slow:
        # the guest asks for 60 s; the host gives it what is left of the call's 5 s
        request = {"auth": "bearer", "url": f"{slow.base}/repos/slow", "timeout": 60}
        _install(tmp_path, "slow", request, '["127.0.0.1"]')
        _add("s", "slow", f"{slow.base}/repos/*")
        r = vultrino("request", "s", "--action", "go", "--json")
        assert slow.paths == ["/repos/slow"]
    assert r.returncode == 0, r.stderr
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "failed" and "timed out" in error["message"]


OAUTH_MANIFEST = """\
[plugin]
name = "oauthed"
version = "1.0.0"
wasm_module = "guest.wasm"

[http]
hosts = ["127.0.0.1"]
auth = ["oauth2"]

[[credential_types]]
name = "client"

[[credential_types.fields]]
name = "token_url"
type = "text"
required = true

[[credential_types.fields]]
name = "client_id"
type = "text"
required = true

[[credential_types.fields]]
name = "client_secret"
type = "password"
required = true
secret = true
access = "host"

[[actions]]
name = "go"
credential_type = "client"
"""
CLIENT_SECRET = "oauth-client-secret-5e8d2b"


class _OAuth(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # the token endpoint: client_secret_basic
        import base64

        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        expected = base64.b64encode(f"app:{CLIENT_SECRET}".encode()).decode()
        with self.server.lock:
            self.server.paths.append(f"POST {self.path}")
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._send(401, {"error": "invalid_client"})
            return
        self._send(200, {"access_token": "at-1-c0ffee", "token_type": "Bearer", "expires_in": 3600})

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.paths.append(f"GET {self.path} {self.headers.get('Authorization', '')}")
        ok = self.headers.get("Authorization") == "Bearer at-1-c0ffee"
        self._send(200 if ok else 401, {"ok": ok})


def test_an_oauth2_token_is_fetched_cached_and_kept_out_of_the_guest(
    home: Path, tmp_path: Path, leakcheck: LeakCheck
) -> None:
    leakcheck.add(CLIENT_SECRET)
    with serving(LocalServer(_OAuth)) as idp:
        src = tmp_path / "oauthed"
        src.mkdir()
        (src / "plugin.toml").write_text(OAUTH_MANIFEST)
        request = {"auth": "oauth2", "url": f"{idp.base}/api/me"}
        (src / "guest.wasm").write_bytes(guests.http_send(_msgpack.packb(request)))
        assert vultrino("plugin", "install", str(src)).returncode == 0
        r = vultrino(
            "add", "--alias", "o", "--type", "plugin:oauthed:client",
            "--field", f"token_url={idp.base}/token", "--field", "client_id=app",
            "--field", "client_secret=-", "--allow", f"{idp.base}/api/*", stdin=CLIENT_SECRET,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        outs = [vultrino("request", "o", "--action", "go", "--json") for _ in range(2)]
        paths = list(idp.paths)
    for r in outs:
        assert r.returncode == 0, r.stderr
        answer = json.loads(r.stdout)["ok"]
        assert answer["status"] == 200 and json.loads(answer["body"]) == {"ok": True}
        assert CLIENT_SECRET not in r.stdout + r.stderr and "at-1-c0ffee" not in r.stdout
    # one token request: the second call used the token cached in the credential's state
    assert paths == [
        "POST /token",
        "GET /api/me Bearer at-1-c0ffee",
        "GET /api/me Bearer at-1-c0ffee",
    ]
