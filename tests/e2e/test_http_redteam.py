"""Red-team findings against the HTTP plugin, replayed through the real doors: a
``python -m vultrino request`` / ``add`` subprocess and the official MCP SDK client talking to a
``python -m vultrino mcp`` subprocess, against a hostile HTTP server on 127.0.0.1 that reflects
whatever credential it is sent (docs/security.md, "Red-team findings: HTTP and scrubbing").
A wasm plugin whose broken answers quote the secret closes the file: engine errors are
scrubbed too.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import anyio
import pytest
from mcp import types

from tests import guests
from tests.e2e.mcp_helpers import (
    HANG_GUARD_S,
    PASSWORD,
    McpHome,
    manifest,
    scan_log,
    sdk_stdio,
)
from tests.leakcheck import LeakCheck
from tests.localhttp import LocalServer, serving

SECRET = "rt-Secret-4Kq9Wz2Lm7Vx3Bp8"
OAUTH_CLIENT = ["--field", "client_id=c", "--field", f"client_secret={SECRET}"]
BR_EXTRA = ["--field", "extra_headers=Accept-Encoding: br"]


class Reflector(LocalServer):
    """A server that hands the credential back in every way the findings used."""

    def __init__(self) -> None:
        super().__init__(_Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Reflector

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.path.startswith("/api/bounce"):
            # Off the allowlist, with the secret in the path: the refusal quotes the URL.
            self._send(302, b"", Location=f"/private/{token}/x")
        elif self.path.startswith("/api/brotli"):
            self._send(200, zlib.compress(token.encode()), Content_Encoding="br")
        elif self.path.startswith("/api/large"):
            # A body past the scrubber's fast-path threshold, the token in it in every form
            # a server echoes it in, scattered between runs of filler.
            self._send(200, large_body(token))
        else:
            self._send(200, json.dumps({"token": token}).encode())

    do_DELETE = do_GET

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)


def echo_forms(token: str) -> list[str]:
    raw = token.encode()
    return [
        token,
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        base64.b64encode(b"\0" + raw).decode()[4:-4],  # inside a longer base64 value
        quote(token, safe=""),
        json.dumps(token)[1:-1],
    ]


def large_body(token: str) -> bytes:
    filler = "".join(f"{i:08d}, lorem ipsum dolor; " for i in range(3000))  # ~70 KiB
    step = len(filler) // 8
    parts = [filler[k * step : (k + 1) * step] for k in range(8)]
    out = parts[0]
    for form, part in zip(echo_forms(token), parts[1:], strict=True):
        out += form + part
    return out.encode()


@pytest.fixture
def server() -> Iterator[Reflector]:
    with serving(Reflector()) as srv:
        yield srv


@pytest.fixture
def home(isolated_home: Path, server: Reflector, leakcheck: LeakCheck) -> McpHome:
    """A real sealed store holding one bearer credential allowed on ``GET <server>/api/*``."""
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    fd, name = tempfile.mkstemp(prefix="vpw-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(PASSWORD + "\n")
    with Vultrino.init(isolated_home, PASSWORD, kdf=KdfParams.minimal()) as v:
        v.add_credential("svc", "bearer", {"token": SECRET}, allow=[f"GET {server.base}/api/*"])
    leakcheck.add(PASSWORD, SECRET)
    return McpHome(isolated_home, Path(name), [PASSWORD, SECRET])


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_redirect_refusal_does_not_quote_the_secret(
    home: McpHome, server: Reflector, leakcheck: LeakCheck
) -> None:
    plain = home.cli("request", "svc", f"{server.base}/api/bounce")
    as_json = home.cli("request", "svc", f"{server.base}/api/bounce", "--json")
    for r in (plain, as_json):
        leakcheck.scan(r.stdout + r.stderr, "vultrino request output")
        assert r.returncode == 8, r.stderr  # AccessDeniedError
        assert "outside the allowlist" in r.stderr
        assert "/private/[REDACTED]/x" in r.stderr
    error = json.loads(as_json.stdout)["error"]
    assert error["type"] == "AccessDeniedError" and "[REDACTED]" in error["message"]
    # The refused hop was never sent.
    assert not any(p.startswith("/private") for p in server.paths)


def test_cli_star_pattern_does_not_reach_a_loopback_server(
    home: McpHome, server: Reflector, leakcheck: LeakCheck
) -> None:
    # Issue 21: '*' admits the URL, the address guard refuses 127.0.0.1 before connecting;
    # the refusal says which address and range, and which pattern would allow it.
    from vultrino.core import Vultrino

    with Vultrino.open(home.root, PASSWORD) as v:
        v.add_credential("wide", "bearer", {"token": SECRET}, allow=["*"])
    r = home.cli("request", "wide", f"{server.base}/api/me", "--json")
    leakcheck.scan(r.stdout + r.stderr, "vultrino request output")
    assert r.returncode == 8, r.stderr  # AccessDeniedError
    error = json.loads(r.stdout)["error"]
    assert error["type"] == "AccessDeniedError"
    assert "127.0.0.1 is in 127.0.0.0/8 (loopback)" in error["message"]
    assert f"--allow '{server.base}/*'" in error["message"]
    assert server.paths == []


def test_cli_undecodable_body_is_an_error_not_raw_bytes(
    home: McpHome, server: Reflector, leakcheck: LeakCheck
) -> None:
    r = home.cli("request", "svc", f"{server.base}/api/brotli")
    leakcheck.scan(r.stdout + r.stderr, "vultrino request output")
    assert r.returncode == 7, r.stderr  # ActionFailedError
    assert "Content-Encoding 'br'" in r.stderr and "no body is returned" in r.stderr
    assert r.stdout == ""


def test_cli_large_body_is_scrubbed_of_every_echoed_form(
    home: McpHome, server: Reflector, leakcheck: LeakCheck
) -> None:
    # Scanned once (by the HTTP plugin, with the pipeline's secrets too), through the fast
    # path for long values: every form is still gone, and nothing else of the body changed.
    r = home.cli("request", "svc", f"{server.base}/api/large", "--json")
    leakcheck.scan(r.stdout + r.stderr, "vultrino request output")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)["body"]
    expected = large_body(SECRET).decode()
    for form in echo_forms(SECRET):
        assert form not in body
        expected = expected.replace(form, "[REDACTED]")
    assert body == expected
    assert body.count("[REDACTED]") == len(echo_forms(SECRET))


@pytest.mark.parametrize(
    "header",
    [
        "X-HTTP-Method-Override: DELETE",
        "x-original-url: /admin",
        "Range: bytes=0-4",
        "Accept-Encoding: br",
    ],
)
def test_cli_refuses_bypass_headers_before_any_io(
    home: McpHome, server: Reflector, header: str
) -> None:
    r = home.cli("request", "svc", f"{server.base}/api/echo", "-H", header)
    name = header.split(":", maxsplit=1)[0]
    assert r.returncode == 6, r.stderr  # ParameterError
    assert f"header {name!r} is refused" in r.stderr or f"header {name!r} cannot be set" in r.stderr
    assert server.paths == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--type", "oauth2", "--field", "token_url=http://auth.example/t", *OAUTH_CLIENT],
            "token_url must use https",
        ),
        (
            ["--type", "oauth2", "--field", "token_url=https://auth.example/t", *OAUTH_CLIENT[:2]],
            "needs client_secret",
        ),
        (
            ["--type", "api_key", "--field", f"key={SECRET}", "--field", "header=Host"],
            "'Host' is not a usable header name",
        ),
        (
            ["--type", "bearer", "--field", f"token={SECRET}", *BR_EXTRA],
            "extra_headers line 1: header 'Accept-Encoding' cannot be set",
        ),
    ],
)
def test_cli_add_refuses_a_credential_the_plugin_cannot_use(
    home: McpHome, leakcheck: LeakCheck, args: list[str], expected: str
) -> None:
    r = home.cli("add", "--alias", "broken", *args, "--allow", "https://api.example/*")
    leakcheck.scan(r.stdout + r.stderr, "vultrino add output")
    assert r.returncode == 4, r.stderr  # CredentialValidationError
    assert expected in r.stderr
    listed = home.cli("list", "--json")
    assert [c["alias"] for c in json.loads(listed.stdout)] == ["svc"]


# --- MCP -----------------------------------------------------------------------------------------


def test_mcp_tool_errors_are_scrubbed_and_bypass_headers_refused(
    home: McpHome, server: Reflector, leakcheck: LeakCheck
) -> None:
    answers: dict[str, types.CallToolResult] = {}
    calls = {
        "bounce": {"url": f"{server.base}/api/bounce"},
        "brotli": {"url": f"{server.base}/api/brotli"},
        "override": {
            "url": f"{server.base}/api/x",
            "headers": {"X-HTTP-Method-Override": "DELETE"},
        },
        "forwarded": {"url": f"{server.base}/api/x", "headers": {"X-Forwarded-Host": "evil"}},
        "range": {"url": f"{server.base}/api/x", "headers": {"range": "bytes=0-4"}},
        "encoding": {"url": f"{server.base}/api/x", "headers": {"Accept-Encoding": "zstd"}},
        "fine": {"url": f"{server.base}/api/echo"},
    }

    async def session(errlog: IO[str]) -> None:
        with anyio.fail_after(HANG_GUARD_S):
            async with sdk_stdio(home, errlog) as s:
                for name, args in calls.items():
                    answers[name] = await s.session.call_tool(
                        "http_request", {"credential": "svc", **args}
                    )

    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        anyio.run(session, errlog)
        dumped = {k: v.model_dump(mode="json", by_alias=True) for k, v in answers.items()}
        scan_log(leakcheck, home, errlog, ("answers", json.dumps(dumped)))

    def text(name: str) -> str:
        block = answers[name].content[0]
        assert isinstance(block, types.TextContent)
        return block.text

    for name in calls:
        assert bool(answers[name].is_error) == (name != "fine"), (name, text(name))
    assert "/private/[REDACTED]/x" in text("bounce")
    assert "no body is returned" in text("brotli")
    for name in ("override", "forwarded", "range"):
        assert "is refused" in text(name)
    assert "cannot be set" in text("encoding")
    assert json.loads(json.loads(text("fine"))["body"]) == {"token": "[REDACTED]"}
    # Only the bounce, the brotli call and the legitimate one reached the server.
    assert sorted(server.paths) == ["/api/bounce", "/api/brotli", "/api/echo"]


# --- errors from a wasm plugin -------------------------------------------------------------------


def _str(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 32
    return bytes([0xA0 | len(raw)]) + raw


# Answers that break the ABI while quoting the secret (as a buggy or hostile plugin would): an
# error code that is not one of the ABI's, and a map keyed by the secret.
BROKEN_ANSWERS = {
    "error-code": b"\x81"
    + _str("error")
    + b"\x82"
    + _str("code")
    + _str(SECRET)
    + _str("message")
    + _str("boom"),
    "map-key": b"\x81" + _str(SECRET) + b"\x01",
}


@pytest.mark.parametrize("answer", sorted(BROKEN_ANSWERS))
def test_engine_errors_quoting_the_secret_are_scrubbed(
    home: McpHome, leakcheck: LeakCheck, answer: str
) -> None:
    from vultrino.core import Vultrino

    plugin_dir = home.root / "plugins" / "leaky"
    plugin_dir.mkdir(parents=True)
    (plugin_dir / "plugin.toml").write_text(manifest("leaky", tool="leaky_echo"), "utf-8")
    (plugin_dir / "leaky.wasm").write_bytes(guests.abi2_fixed(BROKEN_ANSWERS[answer]))
    with Vultrino.open(home.root, PASSWORD) as v:
        v.add_credential("leak", "plugin:leaky:key", {"token": SECRET})
    r = home.cli("request", "leak", "--action", "echo", "--param", "message=hi")
    leakcheck.scan(r.stdout + r.stderr, "vultrino request output")
    assert r.returncode == 9, r.stderr  # PluginABIError
    assert "[REDACTED]" in r.stderr
    # The module (and its compiled copy) hold the secret by construction; the home's other
    # files are still scanned at teardown.
    shutil.rmtree(plugin_dir)
    shutil.rmtree(home.root / "cache", ignore_errors=True)
