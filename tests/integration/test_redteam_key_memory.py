"""After each first-party host-key plugin's actions, the key is nowhere in the guest's memory.

``test_host_keys.py`` scans the ``hmac`` plugin and a hostile guest, ``test_openpgp_keys.py``
the ``pgp`` plugin; this adds the ``ecdsa`` plugin (every action) and the ``github`` plugin,
whose token the host adds to its requests — against a local server that echoes the
Authorization header back in a response header and in the JSON the plugin reads, as a hostile
or careless API might. Each instance's whole linear memory is read after the calls and
searched for the secret in text, bytes, base64, hex and 8-byte windows.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_first_party_plugins import runtime  # noqa: F401 - the engines
from tests.integration.test_host_keys import _memory
from tests.localhttp import LocalServer, serving
from vultrino.plugins.base import CredentialView
from vultrino.plugins.http import HttpPlugin
from vultrino.plugins.manifest import load_manifest
from vultrino.plugins.wasm import WasmPlugin
from vultrino.runtime import PluginModule, WasmRuntime

ROOT = Path(__file__).resolve().parents[2]
# Hardhat's development account #1 (a published key: never a real one)
ECDSA_KEY = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
TOKEN = "ghp_memoryScanToken0123456789abcdefXYZ"


def _forms(text: str, raw: bytes) -> list[bytes]:
    out = [text.encode(), text.upper().encode(), raw, raw[::-1], raw.hex().encode()]
    out += [base64.b64encode(raw), base64.urlsafe_b64encode(raw)]
    out += [base64.b64encode(text.encode()), base64.b64encode(text.encode())[4:]]
    out += [raw[i : i + 8] for i in range(0, len(raw) - 7, 8)]
    return out


def _scan(plugin: WasmPlugin) -> bytes:
    module = plugin.module
    assert isinstance(module, PluginModule)
    memory = _memory(module)
    assert len(memory) >= 65536
    return memory


def test_the_ecdsa_plugin_never_holds_its_key(runtime: WasmRuntime) -> None:  # noqa: F811
    directory = ROOT / "plugins" / "ecdsa"
    manifest = load_manifest(directory / "plugin.toml")
    assert manifest.credential_type("ecdsa_key").host_fields == ("private_key",)  # type: ignore[union-attr]
    plugin = WasmPlugin(directory, manifest, runtime)
    view = CredentialView("e", "ecdsa_key", {"private_key": "0x" + ECDSA_KEY, "testnet": "false"})
    try:
        signed = plugin.execute("sign", {"data": "hello", "format": "utf8"}, view).value
        plugin.execute("sign", {"data": "aGk=", "format": "base64", "hash": "sha256"}, view)
        plugin.execute("sign", {"data": "00" * 32, "format": "hex", "hash": "none"}, view)
        address = plugin.execute("get_address", {}, view).value
        plugin.execute("sign_message", {"message": "hello world"}, view)
        memory = _scan(plugin)
    finally:
        plugin.close()
    assert address["address"] == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert len(bytes.fromhex(signed["signature"].removeprefix("0x"))) == 65
    raw = bytes.fromhex(ECDSA_KEY)
    for form in _forms(ECDSA_KEY, raw):
        assert form not in memory, f"a form of the key ({len(form)} bytes) is in guest memory"


class _Echo(BaseHTTPRequestHandler):
    """An API that reflects the Authorization header it got: in a header and in the issue."""

    server: Any

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _issue(self) -> None:
        auth = self.headers.get("Authorization", "")
        self.server.seen.append(auth)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "number": 7,
                "title": f"you sent {auth}",
                "body": f"Authorization: {auth} / {base64.b64encode(auth.encode()).decode()}",
                "state": "open",
                "html_url": "https://github.com/o/r/issues/7",
                "user": {"login": auth},
            }
        ).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo-Authorization", auth)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _issue


class _EchoServer(LocalServer):
    def __init__(self) -> None:
        super().__init__(_Echo)
        self.seen: list[str] = []


@pytest.fixture
def echo() -> Iterator[_EchoServer]:
    with serving(_EchoServer()) as srv:
        yield srv


def test_the_github_plugin_never_holds_its_token(
    runtime: WasmRuntime,  # noqa: F811
    echo: _EchoServer,
    tmp_path: Path,
) -> None:
    src = tmp_path / "github"
    src.mkdir()
    shutil.copy(ROOT / "plugins" / "github" / "vultrino_github.wasm", src)
    text = (ROOT / "plugins" / "github" / "plugin.toml").read_text()
    (src / "plugin.toml").write_text(text.replace('"api.github.com"', '"127.0.0.1"'))
    manifest = load_manifest(src / "plugin.toml")
    sender = HttpPlugin()
    plugin = WasmPlugin(src, manifest, runtime, http=sender)
    view = CredentialView(
        "gh",
        "github_token",
        {"token": TOKEN, "api_base": echo.base},
        allow=(f"{echo.base}/repos/*",),
        secret_fields=("token",),
    )
    try:
        made = plugin.execute("create_issue", {"repo": "o/r", "title": "t"}, view).value
        got = plugin.execute("get_issue", {"repo": "o/r", "number": 7}, view).value
        memory = _scan(plugin)
    finally:
        plugin.close()
        sender.close()
    assert echo.seen == [f"Bearer {TOKEN}"] * 2  # the host did add the token, twice
    assert TOKEN not in json.dumps([made, got])
    for form in _forms(TOKEN, TOKEN.encode()):
        assert form not in memory, f"a form of the token ({len(form)} bytes) is in guest memory"
