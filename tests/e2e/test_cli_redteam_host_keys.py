"""Red-team checks, through the real CLI, of updates that would weaken a host-only key.

``plugin install --force`` (and so ``plugin dev``, which installs with ``--force``) of a
version whose manifest stops naming a field as another's ``passphrase_field`` is refused: the
field would then be an ordinary host-only field, which the plugin's ``keys`` calls may take as
a key (an HMAC of a passphrase is an offline guessing oracle). docs/security.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.test_cli_host_keys import vultrino

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
