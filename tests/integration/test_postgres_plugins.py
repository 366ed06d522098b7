"""Plugins shared through a PostgreSQL store (docs/scaling.md, "Plugins"): two homes on one
real database (tests/pgcluster.py), as two replicas on two hosts; the database is all they
share. Installing on one reaches the other, removing too, a file whose bytes do not match its
sha256 is refused, and so is a row that someone without the store password wrote (its MAC)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import wasmtime

from tests.e2e.mcp_helpers import ECHO_WAT, NOISY_WAT, manifest, write_plugin
from vultrino.core import Vultrino
from vultrino.errors import (
    ManifestError,
    PluginConflictError,
    PluginDisabledError,
    PluginNotFoundError,
    StoreLockedError,
    StoreUnavailableError,
    UnknownCredentialTypeError,
)
from vultrino.store import KdfParams
from vultrino.store.pg_plugins import PluginShelf, files_digest
from vultrino.store.postgres import PostgresStore

PASSWORD = "shared-plugins-password-Qx71"
NEW_PASSWORD = "shared-plugins-rekeyed-Zp40"
KDF = ("--kdf-opslimit", "1", "--kdf-memlimit-mb", "8")  # weak and fast: a test's store
TOKEN = "late-token-SHARED-9c1e"


def _home(root: Path, url: str) -> Path:
    root.mkdir(parents=True)
    (root / "config.toml").write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
    return root


@pytest.fixture
def homes(tmp_path: Path, pg_url: str) -> tuple[Path, Path]:
    a, b = _home(tmp_path / "a", pg_url), _home(tmp_path / "b", pg_url)
    Vultrino.init(a, PASSWORD, kdf=KdfParams.minimal()).close()
    return a, b


def _source(tmp_path: Path, *, version: str = "1.0.0", tool: str = "late_echo") -> Path:
    src = write_plugin(tmp_path / f"src-{version}", "late", ECHO_WAT, tool=tool)
    (src / "plugin.toml").write_text(manifest("late", tool=tool, version=version))
    return src


def _rows(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


def test_installed_on_one_home_runs_on_the_other_and_removal_reaches_it(
    homes: tuple[Path, Path], tmp_path: Path, pg_url: str
) -> None:
    a_root, b_root = homes
    with Vultrino.open(a_root, PASSWORD) as a, Vultrino.open(b_root, PASSWORD) as b:
        assert b.refresh() is False  # nothing shared yet; builds B's tool list
        result = a.install_plugin(str(_source(tmp_path)))
        a.add_credential("late-one", "plugin:late:key", {"token": TOKEN})
        # the files are in the database, content-addressed, in one row
        (name, version, files), = _rows(
            pg_url, "SELECT name, version, files FROM vultrino_plugins"
        )  # fmt: skip
        assert (name, version) == ("late", "1.0.0")
        assert isinstance(files, dict)
        assert files["late.wasm"] == result.sha256
        blobs = dict(_rows(pg_url, "SELECT sha256, data FROM vultrino_blobs"))
        assert set(blobs) == set(files.values())
        for sha, data in blobs.items():
            assert hashlib.sha256(bytes(data)).hexdigest() == sha  # type: ignore[arg-type]
        # B was not told in this process: the store's NOTIFY (or its revision) tells it
        assert b.refresh() is True  # the tool list changed: MCP sessions get list_changed
        assert "late_echo" in {t.name for t in b.tools()}
        got = b.execute("late-one", "echo", {"message": "from b"})
        assert got["params"] == {"message": "from b"}
        assert (b_root / "plugins" / "late" / "late.wasm").read_bytes() == bytes(
            blobs[result.sha256]  # type: ignore[arg-type]
        )
        shared = json.loads((b_root / "plugins" / ".shared.json").read_text())
        assert set(shared) == {"late"}

        # an update on A reaches B: the new version's tool replaces the old
        a.install_plugin(str(_source(tmp_path, version="1.1.0", tool="late_echo2")), force=True)
        assert b.refresh() is True
        assert b.plugin("late").manifest.plugin.version == "1.1.0"
        assert {"late_echo2"} <= {t.name for t in b.tools()}
        assert "late_echo" not in {t.name for t in b.tools()}
        # the old version's files are gone from the database: only the live ones stay
        (files,), = _rows(pg_url, "SELECT files FROM vultrino_plugins")  # fmt: skip
        assert isinstance(files, dict)
        left = {str(r[0]) for r in _rows(pg_url, "SELECT sha256 FROM vultrino_blobs")}
        assert left == set(files.values())

        a.remove_plugin("late")
        assert _rows(pg_url, "SELECT name FROM vultrino_plugins") == []
        assert _rows(pg_url, "SELECT sha256 FROM vultrino_blobs") == []
        assert b.refresh() is True
        assert not (b_root / "plugins" / "late").exists()
        with pytest.raises((PluginNotFoundError, UnknownCredentialTypeError)):
            b.execute("late-one", "echo", {"message": "gone"})


def test_a_file_whose_bytes_do_not_match_their_sha256_is_refused(
    homes: tuple[Path, Path], tmp_path: Path, pg_url: str
) -> None:
    a_root, b_root = homes
    with Vultrino.open(a_root, PASSWORD) as a:
        result = a.install_plugin(str(_source(tmp_path)))
        a.add_credential("late-one", "plugin:late:key", {"token": TOKEN})
    evil = wasmtime.wat2wasm('(module (memory (export "memory") 1))')
    _rows(
        pg_url,
        "UPDATE vultrino_blobs SET data = %s WHERE sha256 = %s RETURNING 1",
        evil,
        result.sha256,
    )
    with Vultrino.open(b_root, PASSWORD) as b:
        broken = b.broken_plugins()
        assert "late" in broken
        assert "its file late.wasm" in broken["late"]
        assert "does not match its sha256" in broken["late"]
        assert "vultrino plugin install SOURCE --force" in broken["late"]
        assert not (b_root / "plugins" / "late").exists()  # nothing of it was written
        with pytest.raises(PluginNotFoundError, match="does not match its sha256"):
            b.plugin("late")
    # the CLI says the same, and says it once: nothing of the refused plugin reached B
    listed = subprocess.run(
        [sys.executable, "-m", "vultrino", "plugin", "list", "--json"],
        env={**os.environ, "VULTRINO_HOME": str(b_root), "VULTRINO_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    entries = [e for e in json.loads(listed.stdout) if e["name"] == "late"]
    assert [e["status"] for e in entries] == ["broken"]
    assert "does not match its sha256" in entries[0]["reason"]
    # installing it again on any home repairs the row
    with Vultrino.open(a_root, PASSWORD) as a:
        a.install_plugin(str(_source(tmp_path)), force=True)
    with Vultrino.open(b_root, PASSWORD) as b:
        assert b.broken_plugins() == {}
        assert b.execute("late-one", "echo", {"message": "ok"})["params"] == {"message": "ok"}


def test_install_time_checks_run_before_anything_reaches_the_database(
    homes: tuple[Path, Path], tmp_path: Path, pg_url: str
) -> None:
    a_root, b_root = homes
    bad = _source(tmp_path)
    (bad / "plugin.toml").write_text(manifest("late", tool="late_echo").replace("1.0.0", "one"))
    taken = write_plugin(tmp_path / "other", "other", ECHO_WAT, tool="late_echo")
    with Vultrino.open(a_root, PASSWORD) as a, Vultrino.open(b_root, PASSWORD) as b:
        with pytest.raises(ManifestError):
            a.install_plugin(str(bad))
        assert _rows(pg_url, "SELECT name FROM vultrino_plugins") == []
        a.install_plugin(str(_source(tmp_path)))
        # B has not loaded anything yet: its install is checked against what A shared
        with pytest.raises(PluginConflictError, match="late_echo"):
            b.install_plugin(str(taken))
        assert [r[0] for r in _rows(pg_url, "SELECT name FROM vultrino_plugins")] == ["late"]


def test_a_plugin_installed_only_on_one_home_stays_there(
    homes: tuple[Path, Path], tmp_path: Path
) -> None:
    a_root, b_root = homes
    write_plugin(b_root / "plugins", "local", ECHO_WAT, tool="local_echo")  # copied by hand
    with Vultrino.open(a_root, PASSWORD) as a:
        a.install_plugin(str(_source(tmp_path)))
    with Vultrino.open(b_root, PASSWORD) as b:
        assert {p.name for p in b.plugins()} >= {"late", "local"}
        b.remove_plugin("late")  # removed from the database: from every home
    with Vultrino.open(a_root, PASSWORD) as a:
        names = {p.name for p in a.plugins()}
        assert "late" not in names and "local" not in names
    with Vultrino.open(b_root, PASSWORD) as b:
        assert "local" in {p.name for p in b.plugins()}


def test_an_install_whose_database_is_gone_installs_nothing(
    homes: tuple[Path, Path], tmp_path: Path, pg_cluster: object
) -> None:
    a_root, _ = homes
    with Vultrino.open(a_root, PASSWORD) as a:
        a.credentials()  # the store is open
        pg_cluster.stop()  # type: ignore[attr-defined]
        try:
            with pytest.raises(StoreUnavailableError):
                a.install_plugin(str(_source(tmp_path)))
            assert not (a_root / "plugins" / "late").exists()
        finally:
            pg_cluster.restart_stopped()  # type: ignore[attr-defined]


# -- the MAC over each plugin row ------------------------------------------------------------


def _forge(url: str, name: str, module: bytes) -> None:
    """What someone who may write to the database but does not know the store password can
    do: put other code in plugin ``name``'s module and make the row consistent with it (the
    module's sha256, ``.installed.json`` with its sha256 and size, the files list, the digest
    and the metadata), exactly as the code that writes the rows would, and announce it."""
    ((files, metadata),) = _rows(
        url, "SELECT files, metadata FROM vultrino_plugins WHERE name = %s", name
    )
    assert isinstance(files, dict) and isinstance(metadata, dict)
    ((installed,),) = _rows(
        url, "SELECT data FROM vultrino_blobs WHERE sha256 = %s", files[".installed.json"]
    )
    meta = json.loads(bytes(installed))  # type: ignore[arg-type]
    sha = hashlib.sha256(module).hexdigest()
    meta.update(sha256=sha, size=len(module))
    meta_bytes = json.dumps(meta).encode()
    new_files = dict(files)
    new_files[f"{name}.wasm"] = sha
    new_files[".installed.json"] = hashlib.sha256(meta_bytes).hexdigest()
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for data in (module, meta_bytes):
            conn.execute(
                "INSERT INTO vultrino_blobs (sha256, data) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (hashlib.sha256(data).hexdigest(), data),
            )
        conn.execute(
            "UPDATE vultrino_plugins SET files = %s::jsonb, digest = %s, metadata = %s::jsonb "
            "WHERE name = %s",
            (
                json.dumps(new_files),
                files_digest(name, new_files),
                json.dumps({**metadata, "sha256": sha, "size": len(module)}),
                name,
            ),
        )
        # and tell the replicas, as a write by a replica does
        ((revision,),) = conn.execute(
            "UPDATE vultrino_store SET revision = revision + 1 RETURNING revision"
        ).fetchall()
        conn.execute("SELECT pg_notify('vultrino_store', %s)", (str(revision),))


def _cli_list(home: Path, password: str) -> list[dict[str, str]]:
    """``vultrino plugin list --json`` on ``home`` (a replica starting: it syncs first)."""
    listed = subprocess.run(
        [sys.executable, "-m", "vultrino", "plugin", "list", "--json"],
        env={**os.environ, "VULTRINO_HOME": str(home), "VULTRINO_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    entries: list[dict[str, str]] = json.loads(listed.stdout)
    return entries


NOT_OURS = "it was not written by a replica holding the store password"


def test_a_row_replaced_consistently_by_a_database_writer_is_refused(
    homes: tuple[Path, Path], tmp_path: Path, pg_url: str
) -> None:
    a_root, b_root = homes
    with Vultrino.open(a_root, PASSWORD) as a, Vultrino.open(b_root, PASSWORD) as b:
        assert b.refresh() is False  # builds B's tool list
        a.install_plugin(str(_source(tmp_path)))
        a.add_credential("late-one", "plugin:late:key", {"token": TOKEN})
        assert b.refresh() is True
        assert b.execute("late-one", "echo", {"message": "before"})["params"] == {
            "message": "before"
        }
        evil = wasmtime.wat2wasm(NOISY_WAT)
        _forge(pg_url, "late", evil)
        # every file matches its sha256 and the digest its files: only the MAC tells (B
        # hears of the write by its NOTIFY, which arrives on B's listener a moment later)
        deadline = time.monotonic() + 5
        while b.refresh() is False and "late" not in b.broken_plugins():
            assert time.monotonic() < deadline, "B never heard of the replaced row"
            time.sleep(0.05)
        broken = b.broken_plugins()
        assert NOT_OURS in broken["late"]
        assert "vultrino plugin install SOURCE --force" in broken["late"]
        # B's earlier copy is gone and nothing of the replaced row was written
        assert not (b_root / "plugins" / "late").exists()
        assert evil not in [p.read_bytes() for p in b_root.rglob("*.wasm")]
        with pytest.raises((PluginNotFoundError, UnknownCredentialTypeError)):
            b.execute("late-one", "echo", {"message": "after"})
    # a replica that never held it refuses it too, and the CLI shows it broken with why
    c_root = _home(tmp_path / "c", pg_url)
    entries = [e for e in _cli_list(c_root, PASSWORD) if e["name"] == "late"]
    assert [e["status"] for e in entries] == ["broken"]
    assert NOT_OURS in entries[0]["reason"]
    assert not (c_root / "plugins" / "late").exists()
    # installing it again from its source on any replica repairs the row
    with Vultrino.open(a_root, PASSWORD) as a:
        a.install_plugin(str(_source(tmp_path)), force=True)
    with Vultrino.open(c_root, PASSWORD) as c:
        assert c.broken_plugins() == {}
        assert c.execute("late-one", "echo", {"message": "ok"})["params"] == {"message": "ok"}


def test_a_row_from_before_rows_had_a_mac_is_refused_until_installed_again(
    homes: tuple[Path, Path], tmp_path: Path, pg_url: str
) -> None:
    a_root, b_root = homes
    with Vultrino.open(a_root, PASSWORD) as a:
        a.install_plugin(str(_source(tmp_path)))
    # a database shared before this release: the column did not exist (the next replica to
    # start adds it, empty)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE vultrino_plugins DROP COLUMN mac")
    entries = [e for e in _cli_list(b_root, PASSWORD) if e["name"] == "late"]
    assert [e["status"] for e in entries] == ["broken"]
    assert "carries no MAC" in entries[0]["reason"]
    assert "vultrino plugin install SOURCE --force" in entries[0]["reason"]
    assert not (b_root / "plugins" / "late").exists()
    with Vultrino.open(a_root, PASSWORD) as a:
        a.install_plugin(str(_source(tmp_path)), force=True)
    with Vultrino.open(b_root, PASSWORD) as b:
        assert b.broken_plugins() == {}
        assert "late" in {p.name for p in b.plugins()}


def test_a_rekey_re_macs_the_rows_and_an_old_keys_mac_is_refused(
    homes: tuple[Path, Path], tmp_path: Path, pg_url: str
) -> None:
    a_root, b_root = homes
    with Vultrino.open(a_root, PASSWORD) as a, Vultrino.open(b_root, PASSWORD) as b:
        assert b.refresh() is False  # builds B's tool list
        a.install_plugin(str(_source(tmp_path)))
        a.add_credential("late-one", "plugin:late:key", {"token": TOKEN})
        assert b.refresh() is True
        ((before,),) = _rows(pg_url, "SELECT mac FROM vultrino_plugins")
        # the real CLI's rekey on A's home (B stays open on the old key meanwhile)
        new = tmp_path / "new-password"
        new.write_text(NEW_PASSWORD + "\n", encoding="utf-8")
        rekeyed = subprocess.run(
            [sys.executable, "-m", "vultrino", "rekey", "--new-password-file", str(new), *KDF],
            env={**os.environ, "VULTRINO_HOME": str(a_root), "VULTRINO_PASSWORD": PASSWORD},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rekeyed.returncode == 0, rekeyed.stderr
    ((after,),) = _rows(pg_url, "SELECT mac FROM vultrino_plugins")
    assert isinstance(before, bytes) and isinstance(after, bytes) and before != after
    # the other replica, and one that fetches the plugin afresh, run it under the new key
    c_root = _home(tmp_path / "c", pg_url)
    for root in (b_root, c_root):
        with Vultrino.open(root, NEW_PASSWORD) as v:
            assert v.broken_plugins() == {}
            got = v.execute("late-one", "echo", {"message": "rekeyed"})
            assert got["params"] == {"message": "rekeyed"}
    # a row MAC'd under the old key (put back by someone who kept a copy) is refused
    _rows(pg_url, "UPDATE vultrino_plugins SET mac = %s RETURNING 1", before)
    d_root = _home(tmp_path / "d", pg_url)
    entries = [e for e in _cli_list(d_root, NEW_PASSWORD) if e["name"] == "late"]
    assert [e["status"] for e in entries] == ["broken"]
    assert NOT_OURS in entries[0]["reason"]
    assert not (d_root / "plugins" / "late").exists()


def test_a_plugin_shared_after_another_process_re_keyed_is_not_written(
    homes: tuple[Path, Path], pg_url: str
) -> None:
    """A publish that began under the old key but commits after a rekey would write a MAC every
    replica refuses: it is refused itself, under the header row's lock, and writes nothing."""
    stale = PostgresStore.open(pg_url, PASSWORD)
    try:
        shelf = PluginShelf(stale)
        assert shelf.listing() == {}  # the tables exist; this process holds the old key
        other = PostgresStore.open(pg_url, PASSWORD)
        try:
            other.rekey(NEW_PASSWORD, KdfParams.minimal())
        finally:
            other.close()
        with pytest.raises(StoreLockedError, match="re-keyed by another process"):
            shelf.publish("late", "1.0.0", {"plugin.toml": b"[plugin]\n"}, {})
    finally:
        stale.close()
    assert _rows(pg_url, "SELECT name FROM vultrino_plugins") == []
    assert _rows(pg_url, "SELECT sha256 FROM vultrino_blobs") == []


def _until(v: Vultrino, done: Callable[[], bool]) -> bool:
    """Refresh ``v`` until ``done()``: another home's change reaches ``v`` through the
    database's notification, on its listener's connection, a moment after the commit."""
    deadline = time.monotonic() + 10
    while True:
        v.refresh()
        if done():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_a_plugin_disabled_on_one_home_is_disabled_on_every_replica(
    homes: tuple[Path, Path], tmp_path: Path
) -> None:
    """Found in review: `plugin disable` wrote its marker in this home's directory only, so
    every other replica of the store kept running the plugin's actions and listing its tools."""
    a_root, b_root = homes
    with Vultrino.open(a_root, PASSWORD) as a, Vultrino.open(b_root, PASSWORD) as b:
        assert b.refresh() is False  # builds B's tool list
        a.install_plugin(str(_source(tmp_path)))
        a.add_credential("late-one", "plugin:late:key", {"token": TOKEN})
        assert b.refresh() is True
        assert b.execute("late-one", "echo", {"message": "on"})["params"] == {"message": "on"}

        assert a.set_plugin_enabled("late", False) is True
        assert _until(b, lambda: not b.plugin_enabled("late"))
        assert "late_echo" not in {t.name for t in b.tools()}
        assert b.plugin_enabled("late") is False
        with pytest.raises(PluginDisabledError):
            b.execute("late-one", "echo", {"message": "off"})

        assert a.set_plugin_enabled("late", True) is True
        assert _until(b, lambda: b.plugin_enabled("late"))
        assert b.plugin_enabled("late") is True
        assert b.execute("late-one", "echo", {"message": "on"})["params"] == {"message": "on"}

        assert b.set_plugin_enabled("late", False) is True  # either replica may do it
        assert _until(a, lambda: not a.plugin_enabled("late"))
        # a disabled plugin replaced with install --force stays off on every replica
        a.install_plugin(str(_source(tmp_path, version="1.1.0")), force=True)
        assert _until(b, lambda: b.plugin("late").manifest.plugin.version == "1.1.0")
        assert b.plugin_enabled("late") is False and a.plugin_enabled("late") is False
    # through the real CLI, on the other home: listed as disabled, its action refused
    env = {**os.environ, "VULTRINO_PASSWORD": PASSWORD}
    listed = subprocess.run(
        [sys.executable, "-m", "vultrino", "--home", str(a_root), "plugin", "list", "--json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["late"]["status"] == "disabled"
    refused = subprocess.run(
        [sys.executable, "-m", "vultrino", "--home", str(a_root), "request", "late-one",
         "--action", "echo", "--param", "message=x"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert refused.returncode == 5 and "plugin late is disabled" in refused.stderr
