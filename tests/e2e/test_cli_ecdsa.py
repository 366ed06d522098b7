"""The first-party ``ecdsa`` plugin through the real CLI (``python -m vultrino`` processes).

``plugin install ecdsa`` by name, ``add`` on a pty (which says the plugin never sees the key),
then ``request`` for the address and an EIP-191 signature that matches the published one; the
key never appears in any output or file of the home.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_cli_host_keys import vultrino
from tests.e2e.test_cli_paste import Terminal
from tests.integration.test_ecdsa_plugin import HARDHAT, VIEM_HELLO_WORLD
from tests.leakcheck import LeakCheck

KEY, ADDRESS = HARDHAT[0]


@pytest.fixture
def home(isolated_home: Path, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    leakcheck.add(KEY, KEY[2:])
    for args in (["init"], ["plugin", "install", "ecdsa"]):
        r = vultrino(*args)
        assert r.returncode == 0, r.stderr
    return isolated_home


def test_add_on_a_terminal_then_address_and_signatures(home: Path) -> None:
    t = Terminal("add", "--alias", "wallet", "--type", "plugin:ecdsa:ecdsa_key")
    t.expect(r"this plugin never sees: private_key")
    t.expect(r"Private key .*: ")
    t.type(KEY + "\n")
    assert t.finish() == 0, t.seen
    assert KEY[2:] not in t.seen

    r = vultrino("request", "wallet", "--action", "get_address", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["address"] == ADDRESS and out["testnet"] is False

    r = vultrino(
        "request", "wallet", "--action", "sign_message", "--param", "message=hello world", "--json"
    )
    assert r.returncode == 0, r.stderr
    signed = json.loads(r.stdout)
    assert signed["signature"] == VIEM_HELLO_WORLD and signed["v"] == 27

    r = vultrino(
        "request", "wallet", "--action", "sign", "--param", "data=0xabcd", "--param", "hash=none"
    )
    assert r.returncode != 0
    assert "32 bytes" in r.stderr and "got 2 bytes" in r.stderr


def test_info_names_the_host_only_key_and_a_bad_key_is_refused_clearly(home: Path) -> None:
    info = vultrino("plugin", "info", "ecdsa")
    assert info.returncode == 0, info.stderr
    assert "this plugin never sees: private_key" in info.stdout
    bad = "0x" + "12" * 31
    r = vultrino(
        "add",
        "--alias",
        "short",
        "--type",
        "plugin:ecdsa:ecdsa_key",
        "--field",
        "private_key=-",
        "--field",
        "testnet=true",
        stdin=bad,
    )
    assert r.returncode == 0, r.stderr
    r = vultrino("request", "short", "--action", "get_address")
    assert r.returncode != 0
    assert "private_key" in r.stderr and "32 bytes" in r.stderr
    assert bad[2:] not in r.stdout + r.stderr
