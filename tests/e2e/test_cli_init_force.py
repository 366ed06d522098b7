"""`vultrino init --force`: re-initialising a home that has a store, through the real CLI —
on a pseudo-terminal (the confirmation, then the new password) and without one (only --yes)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli_paste import Terminal
from tests.leakcheck import LeakCheck

OLD = "old store password 3c5e"
NEW = "new store password 9a1f"
KEY = "sk-init-force-2b8e61c0d4f7"


def cli(
    *args: str, password: str = OLD, stdin: str | None = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        env={**os.environ, "VULTRINO_PASSWORD": password},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def home(isolated_home: Path, tmp_path: Path, leakcheck: LeakCheck) -> Path:
    """A home with a store holding one credential, a config file and an installed-plugin
    folder and audit log that init --force must keep."""
    leakcheck.add(OLD, NEW, KEY)
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    assert cli("init").returncode == 0
    key = tmp_path / "key"
    key.write_text(KEY)
    r = cli("add", "-a", "gh", "-t", "api_key", "--field", f"key=@{key}")
    assert r.returncode == 0, r.stderr
    (isolated_home / "plugins" / "keepme").mkdir()
    (isolated_home / "plugins" / "keepme" / "marker").write_text("x")
    return isolated_home


def _backups(home: Path) -> list[Path]:
    d = home / "backups"
    return sorted(d.iterdir()) if d.exists() else []


def test_without_a_tty_it_refuses_without_yes_and_changes_nothing(home: Path) -> None:
    before = (home / "credentials.enc").read_bytes()
    for stdin in ("", "y\n"):  # a piped `y` does not confirm this one
        r = cli("init", "--force", password=NEW, stdin=stdin)
        assert r.returncode == 2, r.stderr
        assert "no terminal to ask on" in r.stderr and "--yes" in r.stderr
        assert "replaced: credentials.enc" in r.stderr and "kept: config.toml" in r.stderr
    assert (home / "credentials.enc").read_bytes() == before
    assert _backups(home) == []
    plain = cli("init", password=NEW)  # without --force: the store is never touched
    assert plain.returncode == 3 and "vultrino init --force" in plain.stderr


def test_yes_replaces_the_store_and_keeps_the_old_one_sealed(home: Path) -> None:
    before = (home / "credentials.enc").read_bytes()
    r = cli("init", "--force", "--yes", password=NEW)
    assert r.returncode == 0, r.stderr
    (backup,) = _backups(home)
    assert backup.read_bytes() == before  # moved unchanged
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "backups").stat().st_mode) == 0o700
    assert str(backup) in r.stderr and "created" in r.stderr

    # the new store opens with the new password and is empty; the old one is gone from it
    listed = cli("list", "--json", password=NEW)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert cli("list", password=OLD).returncode == 3
    # what init --force keeps
    assert (home / "config.toml").exists() and (home / "plugins" / "keepme" / "marker").exists()
    audit = [json.loads(x) for x in (home / "audit.log").read_text().splitlines()]
    assert audit[0]["action"] == "credential.add"  # the old history stays
    assert audit[-1]["action"] == "store.reinit" and audit[-1]["subject"] == str(backup)
    assert cli("audit", "verify", password=NEW).returncode == 0

    # the backup is the old store: moved back, it opens with the old password
    (home / "credentials.enc").unlink()
    backup.rename(home / "credentials.enc")
    info = cli("info", "gh", "--json", password=OLD)
    assert info.returncode == 0 and json.loads(info.stdout)["alias"] == "gh"
    assert KEY not in r.stdout + r.stderr + info.stdout


def test_force_on_a_home_without_a_store_is_a_plain_init(isolated_home: Path) -> None:
    r = cli("init", "--force", password=NEW)
    assert r.returncode == 0, r.stderr
    assert not (isolated_home / "backups").exists()


def test_on_a_terminal_it_asks_first_and_no_keeps_everything(home: Path) -> None:
    before = (home / "credentials.enc").read_bytes()
    t = Terminal("init", "--force")
    t.expect(r"kept: config\.toml")
    t.expect(r"Replace the store with a new, empty one\? \[y/N\]: ")
    t.type("n\n")
    assert t.finish() == 1, t.seen
    assert "aborted: nothing was changed" in t.seen
    assert (home / "credentials.enc").read_bytes() == before and _backups(home) == []


def test_on_a_terminal_yes_then_the_new_password_twice(home: Path) -> None:
    t = Terminal("init", "--force")
    t.expect(r"\[y/N\]: ")
    t.type("y\n")
    t.expect(r"New store password: ")
    t.type(NEW + "\n")
    t.expect(r"Repeat password: ")
    t.type(NEW + "\n")
    t.expect(r"web admin password.*: ")
    t.type("\n")  # skipped
    assert t.finish() == 0, t.seen
    assert "the old store is kept at" in t.seen and NEW not in t.seen
    assert len(_backups(home)) == 1
    assert cli("list", "--json", password=NEW).stdout.strip() == "[]"
