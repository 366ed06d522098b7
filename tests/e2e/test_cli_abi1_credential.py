"""What an ABI 1 plugin receives as its credential, through the real CLI: the original host's
``{"type": "custom", <field>: "<string>"...}`` — every value a string, empty fields left out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import guests
from tests.leakcheck import LeakCheck

PASSWORD = "abi1 credential shape"
TOKEN = "tok-abi1-7c2e90d4b1a3"

MANIFEST = """\
[plugin]
name = "legacy-echo"
version = "1.0.0"
wasm_module = "legacy_echo.wasm"

[[credential_types]]
name = "account"

[[credential_types.fields]]
name = "user"
type = "text"
required = true

[[credential_types.fields]]
name = "token"
type = "password"
secret = true
required = true

[[credential_types.fields]]
name = "sandbox"
type = "checkbox"
default = false

[[credential_types.fields]]
name = "port"
type = "number"

[[credential_types.fields]]
name = "note"
type = "text"

[[actions]]
name = "echo"

[[actions.parameters]]
name = "n"
type = "integer"
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        env={**os.environ, "VULTRINO_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def home(isolated_home: Path, tmp_path: Path, leakcheck: LeakCheck) -> Path:
    leakcheck.add(PASSWORD)
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    src = tmp_path / "legacy-echo"
    src.mkdir()
    (src / "plugin.toml").write_text(MANIFEST)
    (src / "legacy_echo.wasm").write_bytes(guests.abi1_echo())  # answers with what it got
    for args in (["init"], ["plugin", "install", str(src)]):
        r = cli(*args)
        assert r.returncode == 0, r.stderr
    return isolated_home


def test_an_abi1_plugin_gets_the_original_hosts_custom_credential(
    home: Path, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    r = cli(
        "add", "-a", "acct", "-t", "plugin:legacy-echo:account", "--field", "user=ops",
        "--field", f"token=@{token}", "--field", "sandbox=true", "--field", "port=8443",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = cli("action", "acct", "legacy-echo.echo", "-p", '{"n": 1}', "-q")
    assert out.returncode == 0, out.stderr
    sent = json.loads(out.stdout)  # the request JSON the plugin was handed, as its answer
    # the token is scrubbed out of the answer on its way back, as every secret is
    assert TOKEN not in out.stdout
    assert sent["credential"]["type"] == "custom"
    assert sent["credential"]["token"] != TOKEN
    assert {k: v for k, v in sent["credential"].items() if k != "token"} == {
        "type": "custom",
        "user": "ops",
        "sandbox": "true",  # a checkbox as the string the original stored
        "port": "8443",  # a number too
    }  # the unset "note" is left out, as the original never stored an empty field
    assert all(isinstance(v, str) for v in sent["credential"].values())
    assert sent["parameters"] == {"n": 1} and sent["action"] == "echo"
