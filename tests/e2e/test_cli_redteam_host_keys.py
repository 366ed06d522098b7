"""Red-team checks, through the real CLI, of plugins that never hold the key (docs/security.md,
"Review of plugins that never hold the key").

- ``plugin install --force`` (and so ``plugin dev``) of a version whose manifest stops naming a
  field as another's ``passphrase_field`` is refused: the field would become an ordinary
  host-only field, which ``keys`` calls may take as a key (an offline guessing oracle).
- an ``oauth2`` request through the host never sends the client secret to a ``token_url``
  outside ``[http] hosts`` (a manifest can suggest one as a field's default).
- a second host-only secret that the API reflects never reaches the guest.
"""

from __future__ import annotations

import json
import shutil
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests import guests
from tests.e2e.test_cli_host_http import CLIENT_SECRET, OAUTH_MANIFEST, _OAuth
from tests.e2e.test_cli_host_keys import vultrino
from tests.leakcheck import LeakCheck
from tests.localhttp import LocalServer, serving
from vultrino import _msgpack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(isolated_home: Path) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    for args in (["init"], ["plugin", "install", str(ROOT / "plugins" / "pgp")]):
        r = vultrino(*args)
        assert r.returncode == 0, r.stderr
    return isolated_home


def _copy_of_pgp(tmp_path: Path, edit: str = "") -> Path:
    src = tmp_path / "update" / "pgp"
    src.mkdir(parents=True)
    shutil.copy(ROOT / "plugins" / "pgp" / "vultrino_pgp.wasm", src / "vultrino_pgp.wasm")
    text = (ROOT / "plugins" / "pgp" / "plugin.toml").read_text()
    if edit:
        assert edit in text
        text = text.replace(edit, "")
    (src / "plugin.toml").write_text(text)
    return src


def test_an_update_that_drops_passphrase_field_is_refused(home: Path, tmp_path: Path) -> None:
    update = _copy_of_pgp(tmp_path, 'passphrase_field = "passphrase"\n')
    before = (home / "plugins" / "pgp" / "plugin.toml").read_bytes()
    r = vultrino("plugin", "install", "--force", str(update))
    assert r.returncode == 5, r.stderr
    assert "pgp_key.passphrase" in r.stderr and "passphrase_field" in r.stderr
    assert "Keep passphrase_field" in r.stderr
    assert (home / "plugins" / "pgp" / "plugin.toml").read_bytes() == before


def test_an_update_that_keeps_passphrase_field_is_accepted(home: Path, tmp_path: Path) -> None:
    r = vultrino("plugin", "install", "--force", str(_copy_of_pgp(tmp_path)))
    assert r.returncode == 0, r.stderr


def test_an_oauth2_token_url_outside_the_declared_hosts_gets_no_client_secret(
    home: Path, tmp_path: Path, leakcheck: LeakCheck
) -> None:
    """Finding: the host sent a plugin credential's host-only ``client_secret`` to its
    ``token_url`` whatever its host, and a manifest can suggest the token URL (a field's
    default), so a plugin that shows ``only to: api.example.com`` at install could have the
    secret sent to a host of its author's. Now a token URL outside ``[http] hosts`` is
    ``host-not-declared`` and nothing is sent."""
    leakcheck.add(CLIENT_SECRET)
    with serving(LocalServer(_OAuth)) as idp:
        elsewhere = idp.base.replace("127.0.0.1", "localhost")  # not in [http] hosts
        src = tmp_path / "oauthed"
        src.mkdir()
        manifest = OAUTH_MANIFEST.replace(
            'name = "token_url"\ntype = "text"\nrequired = true\n',
            f'name = "token_url"\ntype = "text"\ndefault = "{elsewhere}/token"\n',
        )
        assert elsewhere in manifest
        (src / "plugin.toml").write_text(manifest)
        request = {"auth": "oauth2", "url": f"{idp.base}/api/me"}
        (src / "guest.wasm").write_bytes(guests.http_send(_msgpack.packb(request)))
        r = vultrino("plugin", "install", str(src))
        assert r.returncode == 0, r.stderr
        assert "only to: 127.0.0.1" in r.stderr
        r = vultrino(
            "add", "--alias", "o", "--type", "plugin:oauthed:client", "--field", "client_id=app",
            "--field", "client_secret=-", "--allow", f"{idp.base}/api/*", stdin=CLIENT_SECRET,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        out = vultrino("request", "o", "--action", "go", "--json")
        paths = list(idp.paths)
    assert out.returncode == 0, out.stderr
    error = json.loads(out.stdout)["error"]  # the answer the guest got and returned
    assert error["code"] == "host-not-declared"
    assert "token_url is at localhost" in error["message"]
    assert paths == []  # the token endpoint was never contacted
    assert CLIENT_SECRET not in out.stdout + out.stderr


HOOK_SECRET = "whsec-hostOnlyWebhookSecret-4d2a"
TWO_SECRETS_MANIFEST = """\
[plugin]
name = "hooks"
version = "1.0.0"
wasm_module = "guest.wasm"

[http]
hosts = ["127.0.0.1"]
auth = ["bearer"]

[[credential_types]]
name = "hook"

[[credential_types.fields]]
name = "token"
type = "password"
required = true
secret = true
access = "host"

[[credential_types.fields]]
name = "webhook_secret"
type = "password"
required = true
secret = true
access = "host"

[[actions]]
name = "go"
credential_type = "hook"
"""


def _xor_guest(request: bytes) -> bytes:
    """A guest that sends ``request`` and answers the host's answer with every byte XORed
    with 1, as MessagePack bin: a transform no scrubber of the result can recognise."""
    from tests.guests import HTTP_MODULE, abi2, data_string

    body = f"""
    (local $n i32) (local $out i32) (local $k i32) (local $src i32)
    (call $send (i32.const 65536) (i32.const {len(request)}) (i32.const 1024))
    (local.set $src (i32.load (i32.const 1024)))
    (local.set $n (i32.load (i32.const 1028)))
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                                   (i32.add (local.get $n) (i32.const 9))))
    (i32.store8 (local.get $out) (i32.const 0x81))
    (i32.store8 offset=1 (local.get $out) (i32.const 0xa2))
    (i32.store8 offset=2 (local.get $out) (i32.const 0x6f))
    (i32.store8 offset=3 (local.get $out) (i32.const 0x6b))
    (i32.store8 offset=4 (local.get $out) (i32.const 0xc6))
    (i32.store8 offset=5 (local.get $out) (i32.shr_u (local.get $n) (i32.const 24)))
    (i32.store8 offset=6 (local.get $out) (i32.shr_u (local.get $n) (i32.const 16)))
    (i32.store8 offset=7 (local.get $out) (i32.shr_u (local.get $n) (i32.const 8)))
    (i32.store8 offset=8 (local.get $out) (local.get $n))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $k) (local.get $n)))
      (i32.store8 (i32.add (i32.add (local.get $out) (i32.const 9)) (local.get $k))
        (i32.xor (i32.load8_u (i32.add (local.get $src) (local.get $k))) (i32.const 1)))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br $next)))
    (call $respond (local.get $out) (i32.add (local.get $n) (i32.const 9)))"""
    imports = f'(import "{HTTP_MODULE}" "send" (func $send (param i32 i32 i32)))'
    return abi2(body, imports=imports, extra=f"(data (i32.const 65536) {data_string(request)})")


class _HookApi(BaseHTTPRequestHandler):
    """An API that knows the webhook secret too, and shows it in a hook's config."""

    server: Any

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.paths.append(f"GET {self.path} {self.headers.get('Authorization', '')}")
        body = json.dumps({"config": {"url": "https://x.test/hook", "secret": HOOK_SECRET}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Hook-Secret", HOOK_SECRET)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


def test_another_host_only_secret_the_api_reflects_never_reaches_the_guest(
    home: Path, tmp_path: Path, leakcheck: LeakCheck
) -> None:
    """Finding: the host scrubbed an answer of the auth scheme's own secret only. A credential
    with a second host-only secret that the API also knows (a webhook secret beside the token)
    got that secret back from the API in clear, in the guest, which could then transform it
    (here: XOR each byte) past every scrubber. Now every secret and host-only field of the
    credential is scrubbed from what ``http.send`` answers."""
    token = "ghp_hooksToken0123456789abcdef"
    leakcheck.add(HOOK_SECRET, token)
    with serving(LocalServer(_HookApi)) as api:
        src = tmp_path / "hooks"
        src.mkdir()
        (src / "plugin.toml").write_text(TWO_SECRETS_MANIFEST)
        request = {"auth": "bearer", "url": f"{api.base}/hooks/1/config"}
        (src / "guest.wasm").write_bytes(_xor_guest(_msgpack.packb(request)))
        r = vultrino("plugin", "install", str(src))
        assert r.returncode == 0, r.stderr
        secrets = tmp_path / "secrets"
        secrets.write_text(token)
        r = vultrino(
            "add", "--alias", "h", "--type", "plugin:hooks:hook", "--field", f"token=@{secrets}",
            "--field", "webhook_secret=-", "--allow", f"{api.base}/hooks/*", stdin=HOOK_SECRET,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        out = vultrino("request", "h", "--action", "go", "--json")
        paths = list(api.paths)
    assert out.returncode == 0, out.stderr
    assert paths == [f"GET /hooks/1/config Bearer {token}"]
    import base64

    raw = json.loads(out.stdout)
    data = base64.b64decode(raw if isinstance(raw, str) else raw["base64"])
    answer = _msgpack.unpackb(bytes(b ^ 1 for b in data))["ok"]
    assert json.loads(answer["body"])["config"]["url"] == "https://x.test/hook"  # it did arrive
    assert HOOK_SECRET not in json.dumps(answer)
    assert token not in json.dumps(answer)
