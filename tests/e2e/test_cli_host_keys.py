"""Host-only credential fields through the real CLI (``python -m vultrino`` processes).

A plugin declares ``access = "host"`` on its key: ``vultrino add`` (on a pty), ``plugin info``
and ``types --json`` say the plugin never sees it; ``request`` runs an action whose guest signs
with it through the host's ``keys`` interface, and a hostile guest that echoes its request
shows the field arrived as nil.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import guests
from tests.e2e.test_cli_paste import HANG_GUARD_S, PASSWORD, Terminal
from tests.leakcheck import LeakCheck

SECRET = "host-only-key-5f1c9a2e77d04b"
MANIFEST = """\
[plugin]
name = "{name}"
version = "1.0.0"
wasm_module = "guest.wasm"

[[credential_types]]
name = "key"

[[credential_types.fields]]
name = "private_key"
type = "password"
required = true
secret = true
access = "host"

[[credential_types.fields]]
name = "label"
type = "text"

[[actions]]
name = "sign"
credential_type = "key"
"""


def vultrino(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        input=stdin,
        env={**os.environ, "VULTRINO_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


def _plugin(root: Path, name: str, wasm: bytes) -> Path:
    src = root / name
    src.mkdir()
    (src / "plugin.toml").write_text(MANIFEST.format(name=name))
    (src / "guest.wasm").write_bytes(wasm)
    return src


@pytest.fixture
def home(isolated_home: Path, tmp_path: Path, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    leakcheck.add(PASSWORD, SECRET)
    signer = _plugin(
        tmp_path,
        "hmac-signer",
        guests.keys_call("hmac-sha256", "sign", "private_key", 0, b"msg"),
    )
    hostile = _plugin(tmp_path, "hostile-signer", guests.keys_hostile())
    for args in (
        ["init"],
        ["plugin", "install", str(signer)],
        ["plugin", "install", str(hostile)],
    ):
        r = vultrino(*args)
        assert r.returncode == 0, r.stderr
    return isolated_home


def test_add_says_what_the_plugin_never_sees_and_request_signs_with_it(home: Path) -> None:
    t = Terminal("add", "--alias", "k", "--type", "plugin:hmac-signer:key")
    t.expect(r"this plugin never sees: private_key")
    t.expect(r"private_key.*: ")
    t.type(SECRET + "\n")
    assert t.finish() == 0, t.seen
    assert SECRET not in t.seen
    r = vultrino("request", "k", "--action", "sign", "--json")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert SECRET not in out + r.stderr
    expected = hmac.new(SECRET.encode(), b"msg", "sha256").digest()
    # the guest answers the 12-byte ok record, then the HMAC the host computed (bytes are
    # shown as base64)
    raw = base64.b64decode(json.loads(out))
    assert raw[0] == 0 and raw[12:] == expected


def test_plugin_info_and_types_name_the_host_only_field(home: Path) -> None:
    info = vultrino("plugin", "info", "hmac-signer")
    assert info.returncode == 0, info.stderr
    assert "private_key: password, required, secret, host-only" in info.stdout
    assert "this plugin never sees: private_key" in info.stdout
    as_json = json.loads(vultrino("plugin", "info", "hmac-signer", "--json").stdout)
    (ctype,) = as_json["credential_types"]
    assert ctype["never_sees"] == ["private_key"]
    assert [f["access"] for f in ctype["fields"]] == ["host", "guest"]
    types = json.loads(vultrino("types", "--json").stdout)
    mine = next(t for t in types if t["plugin"] == "hmac-signer")
    assert mine["never_sees"] == ["private_key"]
    assert {f["name"]: f["access"] for f in mine["fields"]} == {
        "private_key": "host",
        "label": "guest",
    }


def test_a_hostile_guest_sees_the_field_as_nil(home: Path) -> None:
    r = vultrino(
        "add",
        "--alias",
        "h",
        "--type",
        "plugin:hostile-signer:key",
        "--field",
        "private_key=-",
        "--field",
        "label=visible",
        stdin=SECRET,
    )
    assert r.returncode == 0, r.stderr
    assert "this plugin never sees: private_key" in r.stderr
    r = vultrino("request", "h", "--action", "sign", "--json")
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr
    request = json.loads(r.stdout)
    assert request["credential"]["fields"] == {"private_key": None, "label": "visible"}


def test_a_plugin_without_host_fields_says_nothing(home: Path, tmp_path: Path) -> None:
    plain = _plugin(tmp_path, "plain", guests.echo())
    text = (plain / "plugin.toml").read_text().replace('access = "host"\n', "")
    (plain / "plugin.toml").write_text(text)
    assert vultrino("plugin", "install", str(plain)).returncode == 0
    info = vultrino("plugin", "info", "plain")
    assert "never sees" not in info.stdout
    r = vultrino(
        "add", "--alias", "p", "--type", "plugin:plain:key", "--field", "private_key=-", stdin="v"
    )
    assert r.returncode == 0 and "never sees" not in r.stderr
    echoed = json.loads(vultrino("request", "p", "--action", "sign", "--json").stdout)
    # as before: the guest gets the value (and the host scrubs it from the result)
    assert echoed["credential"]["fields"]["private_key"] is not None


def test_access_must_be_guest_or_host(home: Path, tmp_path: Path) -> None:
    bad = _plugin(tmp_path, "bad-access", guests.echo())
    text = (bad / "plugin.toml").read_text().replace('access = "host"', 'access = "nobody"')
    (bad / "plugin.toml").write_text(text)
    r = vultrino("plugin", "install", str(bad))
    assert r.returncode != 0
    assert 'access: expected "guest" or "host"' in r.stderr


def test_an_update_that_hands_a_host_only_field_to_the_plugin_is_refused(
    home: Path, tmp_path: Path
) -> None:
    # The same plugin, a new version whose manifest no longer keeps private_key in the host:
    # credentials stored for the installed version would be handed to the guest.
    update = tmp_path / "update" / "hmac-signer"
    update.mkdir(parents=True)
    manifest = MANIFEST.format(name="hmac-signer").replace('access = "host"\n', "")
    assert 'access = "host"' not in manifest
    (update / "plugin.toml").write_text(manifest.replace('version = "1.0.0"', 'version = "2.0.0"'))
    (update / "guest.wasm").write_bytes(guests.keys_hostile())
    before = (home / "plugins" / "hmac-signer" / "plugin.toml").read_bytes()
    r = vultrino("plugin", "install", "--force", str(update))
    assert r.returncode == 5, r.stderr
    assert "key.private_key" in r.stderr and "keeps in the host" in r.stderr
    assert (home / "plugins" / "hmac-signer" / "plugin.toml").read_bytes() == before


def test_a_reinstall_without_access_host_cannot_downgrade_a_stored_host_only_field(
    home: Path, tmp_path: Path
) -> None:
    # A credential stored while its plugin kept private_key in the host; the plugin is removed
    # and another of the same name, whose manifest no longer says `access = "host"`, installed
    # in its place: the stored credential's field must still not reach the guest.
    r = vultrino(
        "add",
        "--alias",
        "h",
        "--type",
        "plugin:hostile-signer:key",
        "--field",
        "private_key=-",
        "--field",
        "label=visible",
        stdin=SECRET,
    )
    assert r.returncode == 0, r.stderr
    assert vultrino("plugin", "remove", "--yes", "hostile-signer").returncode == 0
    again = tmp_path / "again" / "hostile-signer"
    again.mkdir(parents=True)
    manifest = MANIFEST.format(name="hostile-signer").replace('access = "host"\n', "")
    (again / "plugin.toml").write_text(manifest)
    (again / "guest.wasm").write_bytes(guests.echo())
    r = vultrino("plugin", "install", str(again))
    assert r.returncode == 0, r.stderr
    r = vultrino("request", "h", "--action", "sign", "--json")
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr
    echoed = json.loads(r.stdout)
    # nil, not the value (which the host would only have scrubbed from the answer)
    assert echoed["credential"]["fields"] == {"private_key": None, "label": "visible"}
    # and an edit of the credential under the new manifest keeps it host-only
    r = vultrino("edit", "h", "--field", "label=changed")
    assert r.returncode == 0, r.stderr
    echoed = json.loads(vultrino("request", "h", "--action", "sign", "--json").stdout)
    assert echoed["credential"]["fields"] == {"private_key": None, "label": "changed"}
