"""Moving a plugin's key into the host is an update users can take with their stored keys.

Through the real CLI: the ``hmac`` plugin as it was (0.1.0, the key handed to the guest; the
module kept for the benchmarks in ``benchmarks/guests/``) with a credential stored for it, then
``plugin install --force`` of the shipped 0.2.0, whose ``key`` is ``access = "host"``. The
installer accepts an update that *adds* host-only (it refuses only one that drops it), the
credential stored for 0.1.0 is used unchanged, and every answer is the same as before and as
Python's ``hmac``. This is the path of any first-party plugin that moves its key to the host.
"""

from __future__ import annotations

import hmac
import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.test_cli_host_keys import vultrino
from tests.leakcheck import LeakCheck

ROOT = Path(__file__).resolve().parents[2]
GUESTS = ROOT / "benchmarks" / "guests"
SECRET = "upgrade-webhook-secret-3f9a1c"
MESSAGES = ("", "hello", '{"event":"push"}', "ünïcödé ✓")


@pytest.fixture
def home(isolated_home: Path, tmp_path: Path, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    leakcheck.add(SECRET)
    old = tmp_path / "hmac-0.1.0"
    old.mkdir()
    shutil.copy(GUESTS / "hmac_guest_key.toml", old / "plugin.toml")
    shutil.copy(GUESTS / "vultrino_hmac_guest_key.wasm", old / "vultrino_hmac.wasm")
    for args in (["init"], ["plugin", "install", str(old)]):
        r = vultrino(*args)
        assert r.returncode == 0, r.stderr
    return isolated_home


def signatures(alias: str) -> dict[str, str]:
    out = {}
    for message in MESSAGES:
        for algorithm in ("sha256", "sha512"):
            r = vultrino(
                "request",
                alias,
                "--action",
                "sign",
                "--param",
                f"message={message}",
                "--param",
                f"algorithm={algorithm}",
                "--json",
            )
            assert r.returncode == 0, r.stderr
            assert SECRET not in r.stdout + r.stderr
            out[f"{algorithm}:{message}"] = json.loads(r.stdout)["signature"]
    return out


def test_an_update_that_moves_the_key_into_the_host_keeps_stored_credentials(home: Path) -> None:
    info = vultrino("plugin", "info", "hmac", "--json")
    assert json.loads(info.stdout)["version"] == "0.1.0"
    assert "never sees" not in vultrino("plugin", "info", "hmac").stdout
    r = vultrino(
        "add", "--alias", "hook", "--type", "plugin:hmac:hmac_key", "--field", "key=-", stdin=SECRET
    )
    assert r.returncode == 0, r.stderr
    before = signatures("hook")
    for key, signature in before.items():
        algorithm, _, message = key.partition(":")
        assert signature == hmac.new(SECRET.encode(), message.encode(), algorithm).hexdigest()

    r = vultrino("plugin", "install", "--force", str(ROOT / "plugins" / "hmac"))
    assert r.returncode == 0, r.stderr
    info = vultrino("plugin", "info", "hmac")
    assert "0.2.0" in info.stdout
    assert "this plugin never sees: key" in info.stdout
    # the credential stored for 0.1.0, unchanged, now signs through the host: the same answers
    assert signatures("hook") == before
