"""`vultrino import --from-rust PATH`: the original Vultrino's credentials.enc into this home.

The vault is written here by an independent implementation of the original's format —
libsodium's Argon2id (PyNaCl; the importer uses OpenSSL's, through `cryptography`) and
AES-256-GCM — with records shaped as the original's serde writes them. The imported credentials
are then used through the real CLI against a local server, and the imported API key is the one
the original handed out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import string
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import nacl.pwhash
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from typer.testing import CliRunner

from tests.e2e.test_cli_paste import PASSWORD, Terminal  # its terminal uses that password
from tests.guests import abi2_fixed
from tests.leakcheck import LeakCheck
from tests.localhttp import LocalServer, serving
from vultrino import Vultrino
from vultrino._msgpack import packb
from vultrino.cli import app

OLD_PASSWORD = "the original's password 7f3a"
API_SECRET = "sk-live-4f1c9a7e2b"
BASIC_PASSWORD = "hunter2-basic-9c1d"
CLIENT_SECRET = "oauth-client-secret-31bb"
PGP_KEY = "-----BEGIN PGP PRIVATE KEY BLOCK-----\nabc123secret\n-----END-----\n"

runner = CliRunner()

SIGNER = """\
[plugin]
name = "signer"
version = "1.0.0"
wasm_module = "signer.wasm"

[[credential_types]]
name = "pgp_key"

[[credential_types.fields]]
name = "private_key"
type = "textarea"
required = true
secret = true

[[credential_types.fields]]
name = "key_id"
type = "text"

[[actions]]
name = "sign"
"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _KeyHeader(BaseHTTPRequestHandler):
    server: LocalServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            seen = (self.headers.get("X-Api-Key", ""), self.headers.get("Authorization", ""))
            self.server.paths.append(f"{self.path} {seen[0] == API_SECRET} {seen[1]!r}")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def write_vault(
    path: Path, password: str, payload: Any, *, version: int = 2, section: str = "data"
) -> None:
    """The original's FileStorage::save, independently: Argon2id(m=19456 KiB, t=2, p=1) over
    the raw salt (libsodium's, whose parallelism is 1), AES-256-GCM without associated data."""
    salt = os.urandom(16)
    key = nacl.pwhash.argon2id.kdf(32, password.encode(), salt, opslimit=2, memlimit=19456 * 1024)
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, json.dumps(payload).encode(), None)
    envelope = {
        "version": version,
        "salt": b64(salt),
        section: {"nonce": b64(nonce), "ciphertext": b64(ciphertext)},
    }
    path.write_text(json.dumps(envelope, indent=2))


def original_key() -> tuple[str, dict[str, Any]]:
    """An API key as the original's AuthManager makes one: vk_ + 32 letters and digits, its
    SHA-256 kept in standard base64."""
    chars = string.ascii_letters + string.digits
    key = "vk_" + "".join(secrets.choice(chars) for _ in range(32))
    record = {
        "id": "9b0e6d1c-3f7a-4c55-9a31-2d1b7e0c4f88",
        "key_prefix": key[:11],
        "key_hash": b64(hashlib.sha256(key.encode()).digest()),
        "name": "CI Deploy",
        "role_id": "5d2f8a10-aaaa-4bbb-8ccc-123456789abc",
        "created_at": "2025-03-01T10:00:00.123456789Z",
    }
    return key, record


def cred(cid: str, alias: str, ctype: Any, data: dict[str, Any], **meta: str) -> dict[str, Any]:
    return {
        "id": cid,
        "alias": alias,
        "credential_type": ctype,
        "data": data,
        "metadata": meta,
        "created_at": "2025-01-31T12:00:00.5Z",
        "updated_at": "2025-02-01T08:30:00Z",
    }


def payload(key_record: dict[str, Any]) -> dict[str, Any]:
    creds = [
        cred(
            "c1",
            "github",
            "api_key",
            {"type": "api_key", "key": API_SECRET, "header_name": "X-Api-Key", "header_prefix": ""},
            description="GitHub token",
        ),
        cred(
            "c2",
            "intranet",
            "basic_auth",
            {"type": "basic_auth", "username": "svc", "password": BASIC_PASSWORD},
        ),
        cred(
            "c3",
            "auth0",
            "o_auth2",
            {
                "type": "o_auth2",
                "client_id": "cid",
                "client_secret": CLIENT_SECRET,
                "token_url": "https://auth.example.com/oauth/token",
                "scopes": ["read", "write"],
                "access_token": "cached-access-token-zz",
            },
        ),
        cred(
            "c4",
            "release-key",
            {"custom": "custom"},
            {"type": "custom", "private_key": PGP_KEY, "key_id": "ABCD1234"},
            plugin_type="plugin:signer:pgp_key",
        ),
        cred(
            "c5",
            "wallet",
            "ecdsa_key",
            {"type": "ecdsa_key", "private_key": "0xdeadbeefcafe", "testnet": True},
        ),
        cred("c6", "mystery", {"custom": "custom"}, {"type": "custom", "x": "y"}),
        cred(
            "c8",
            "binance",
            "hmac_api_key",
            {
                "type": "hmac_api_key",
                "api_key": "exch-key-1",
                "api_secret": "exch-secret-2",
                "header_name": "X-MBX-APIKEY",
                "recv_window": 7000,
            },
        ),
        cred(
            "c7",
            "gpg-other",
            {"custom": "custom"},
            {"type": "custom", "private_key": "k"},
            plugin_type="plugin:pgp-signing:pgp_key",
        ),
    ]
    return {
        "credentials": {c["id"]: c for c in creds},
        "roles": {
            "5d2f8a10-aaaa-4bbb-8ccc-123456789abc": {
                "id": "5d2f8a10-aaaa-4bbb-8ccc-123456789abc",
                "name": "github-executor",
                "description": "Use the GitHub credentials",
                "permissions": ["read", "execute", "update"],
                "credential_scopes": ["github*"],
                "created_at": "2025-02-01T00:00:00Z",
            },
            "admin": {
                "id": "admin",
                "name": "admin",
                "permissions": ["read", "write", "update", "delete", "execute"],
                "credential_scopes": [],
                "created_at": "2025-02-01T00:00:00Z",
            },
        },
        "api_keys": {key_record["id"]: key_record},
    }


@pytest.fixture
def home(
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    leakcheck: LeakCheck,
) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    monkeypatch.setenv("VULTRINO_PASSWORD", PASSWORD)
    leakcheck.add(PASSWORD, OLD_PASSWORD, API_SECRET, BASIC_PASSWORD, CLIENT_SECRET, "abc123secret")
    src = tmp_path / "signer"
    src.mkdir()
    (src / "plugin.toml").write_text(SIGNER)
    (src / "signer.wasm").write_bytes(abi2_fixed(packb({"ok": "signed"})))
    for args in (["init"], ["plugin", "install", str(src)]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.stderr
    return isolated_home


@pytest.fixture
def vault(tmp_path: Path, leakcheck: LeakCheck) -> tuple[Path, Path, str]:
    key, record = original_key()
    leakcheck.add(key)
    path = tmp_path / "credentials.enc"
    write_vault(path, OLD_PASSWORD, payload(record))
    pw = tmp_path / "old-password"
    pw.write_text(OLD_PASSWORD + "\n")
    return path, pw, key


def invoke(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def test_import_maps_credentials_roles_and_keys_and_says_what_it_skipped(
    home: Path, vault: tuple[Path, Path, str]
) -> None:
    path, pw, key = vault
    code, out, err = invoke(
        "import", "--from-rust", str(path), "--from-password-file", str(pw), "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    by = {(i["kind"], i["name"]): i for i in report["items"]}
    assert by["credential", "github"]["status"] == "imported"
    assert by["credential", "github"]["target"] == "api_key"
    assert by["credential", "intranet"]["target"] == "basic_auth"
    assert by["credential", "auth0"]["source"] == "oauth2"
    assert "cached access token" in by["credential", "auth0"]["note"]
    assert by["credential", "release-key"]["target"] == "plugin:signer:pgp_key"
    assert by["credential", "release-key"]["status"] == "imported"
    assert by["credential", "wallet"]["status"] == "skipped"
    assert "ECDSA" in by["credential", "wallet"]["reason"]
    assert "plugin_type" in by["credential", "mystery"]["reason"]
    assert by["credential", "gpg-other"]["status"] == "skipped"
    assert "install the plugin" in by["credential", "gpg-other"]["reason"]
    assert by["role", "admin"]["status"] == "built-in"
    assert by["role", "github-executor"]["status"] == "imported"
    assert "update became write" in by["role", "github-executor"]["note"]
    assert by["key", "CI Deploy"]["status"] == "imported"
    assert by["key", "CI Deploy"]["target"] == "github-executor"
    assert by["credential", "binance"]["target"] == "hmac_api_key"
    assert by["credential", "binance"]["status"] == "imported"
    assert report["counts"] == {"imported": 7, "skipped": 3, "built-in": 1}

    with Vultrino.open(home, PASSWORD) as v:
        v.unlock()
        fields = dict(v._s.store.get("github").fields)
        assert fields["key"] == API_SECRET and fields["header"] == "X-Api-Key"
        assert v._s.store.get("release-key").fields["private_key"] == PGP_KEY
        oauth = dict(v._s.store.get("auth0").fields)
        assert oauth["scope"] == "read write" and oauth["grant_type"] == "client_credentials"
        assert "access_token" not in oauth
        assert dict(v._s.store.get("binance").fields) == {
            "api_key": "exch-key-1",
            "api_secret": "exch-secret-2",
            "header_name": "X-MBX-APIKEY",
            "recv_window": 7000,
        }
        info = v.credential_info("github")
        assert info.description == "GitHub token"
        assert info.created_at == "2025-01-31T12:00:00Z"
        role = v.role_info("github-executor")
        assert role.permissions == ("read", "execute", "write")
        assert role.credentials == ("github*",)
        # the key the original handed out is a key of this home now, acting as the role
        found = v.key_identity(key)
        assert found.name == "ci-deploy" and found.role == "github-executor"

    # a second run imports nothing twice: everything it wrote is skipped by name
    code, out, err = invoke(
        "import", "--from-rust", str(path), "--from-password-file", str(pw), "--json"
    )
    assert code == 0, err
    again = json.loads(out)
    assert "imported" not in again["counts"]
    assert (
        "already exists"
        in {(i["kind"], i["name"]): i for i in again["items"]}["credential", "github"]["reason"]
    )


def test_an_imported_api_key_credential_sends_the_header_the_original_sent(
    home: Path, vault: tuple[Path, Path, str]
) -> None:
    path, pw, _ = vault
    assert invoke("import", "--from-rust", str(path), "--from-password-file", str(pw))[0] == 0
    with serving(LocalServer(_KeyHeader)) as srv:
        code, _, err = invoke("edit", "github", "--add-allow", f"{srv.base}/*")
        assert code == 0, err
        code, _out, err = invoke("request", "github", f"{srv.base}/user", "--json")
        assert code == 0, err
    # the key went in X-Api-Key with no prefix, as the original sent it; no Authorization
    assert srv.paths == ["/user True ''"]


def test_dry_run_writes_nothing(home: Path, vault: tuple[Path, Path, str]) -> None:
    path, pw, _ = vault
    before = (home / "credentials.enc").read_bytes()
    code, out, err = invoke(
        "import", "--from-rust", str(path), "--from-password-file", str(pw), "--dry-run"
    )
    assert code == 0, err
    assert "would import" in out
    assert "dry run: nothing written" in err
    assert "wallet: skipped: ECDSA" in err
    assert (home / "credentials.enc").read_bytes() == before


def test_a_wrong_password_is_a_clear_error_and_writes_nothing(
    home: Path, vault: tuple[Path, Path, str], tmp_path: Path
) -> None:
    path, _, _ = vault
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    before = (home / "credentials.enc").read_bytes()
    code, _out, err = invoke("import", "--from-rust", str(path), "--from-password-file", str(wrong))
    assert code == 3
    assert "wrong password" in err and str(path) in err
    assert (home / "credentials.enc").read_bytes() == before


@pytest.mark.parametrize("cut", [0.5, 0.98])
def test_a_truncated_vault_is_a_clear_error(
    home: Path, vault: tuple[Path, Path, str], cut: float
) -> None:
    path, pw, _ = vault
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    code, _, err = invoke("import", "--from-rust", str(path), "--from-password-file", str(pw))
    assert code == 3
    assert "truncated" in err or "damaged" in err


def test_a_cut_ciphertext_inside_valid_json_is_refused(
    home: Path, vault: tuple[Path, Path, str]
) -> None:
    path, pw, _ = vault
    doc = json.loads(path.read_text())
    raw = base64.b64decode(doc["data"]["ciphertext"])
    doc["data"]["ciphertext"] = b64(raw[: len(raw) // 2])
    path.write_text(json.dumps(doc))
    code, _, err = invoke("import", "--from-rust", str(path), "--from-password-file", str(pw))
    assert code == 3
    assert "wrong password" in err and "altered" in err


def test_the_first_format_and_the_old_section_name_are_read(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "old.enc"
    only = cred(
        "c1",
        "legacy",
        "basic_auth",
        {"type": "basic_auth", "username": "u", "password": BASIC_PASSWORD},
    )
    write_vault(path, OLD_PASSWORD, {"c1": only}, version=1, section="credentials")
    pw = tmp_path / "pw"
    pw.write_text(OLD_PASSWORD)
    code, out, err = invoke(
        "import", "--from-rust", str(path), "--from-password-file", str(pw), "--json"
    )
    assert code == 0, err
    assert [i["name"] for i in json.loads(out)["items"]] == ["legacy"]


def test_not_a_vault_and_a_missing_file_are_told_apart(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    pw = tmp_path / "pw"
    pw.write_text(OLD_PASSWORD)
    code, _, err = invoke("import", "--from-rust", str(other), "--from-password-file", str(pw))
    assert code == 3 and "not the original Vultrino's store" in err
    code, _, err = invoke("import", "--from-rust", str(tmp_path / "nope.enc"))
    assert code == 2 and "does not exist" in err


def test_without_a_terminal_or_a_password_file_it_says_how(
    home: Path, vault: tuple[Path, Path, str]
) -> None:
    path, _, _ = vault
    code, _, err = invoke("import", "--from-rust", str(path))
    assert code == 3
    assert "--from-password-file" in err


def test_the_original_password_is_asked_hidden_on_a_terminal(
    home: Path, vault: tuple[Path, Path, str]
) -> None:
    path, _, _ = vault
    env_home = os.environ["VULTRINO_HOME"]
    assert env_home == str(home)
    t = Terminal("import", "--from-rust", str(path))
    t.expect(r"Password of the original Vultrino's store: ")
    t.type(OLD_PASSWORD + "\n")
    code = t.finish()
    assert code == 0, t.seen
    assert OLD_PASSWORD not in t.seen  # not echoed
    assert "github" in t.seen and "imported" in t.seen


def test_import_is_listed_in_help() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", "import", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0
    assert "--from-rust" in r.stdout and "--dry-run" in r.stdout
