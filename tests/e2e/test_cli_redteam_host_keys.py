"""Red-team checks, through the real CLI, of updates that would weaken a host-only key.

``plugin install --force`` (and so ``plugin dev``, which installs with ``--force``) of a
version whose manifest stops naming a field as another's ``passphrase_field`` is refused: the
field would then be an ordinary host-only field, which the plugin's ``keys`` calls may take as
a key (an HMAC of a passphrase is an offline guessing oracle). docs/security.md.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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
