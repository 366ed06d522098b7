"""Plugins shared by the replicas of one PostgreSQL store (docs/scaling.md, "Plugins").

With a PostgreSQL store the database is where installed plugins live for every replica: an
install validates the plugin exactly as on a file-store home (manifest, host-only field rules,
the ABI and WIT world check, conflicts), then :func:`publisher` stores its files
content-addressed in the database (:mod:`vultrino.store.pg_plugins`) before the staged
directory is moved into ``plugins/``. Every replica's :func:`sync` (run when the store's
revision moves, which an install or removal on any replica makes it do) compares the
database's plugins with what it holds, fetches what changed, checks every file against its
sha256, and materialises it into its own ``plugins/<name>`` (the engines compile it into the
local cache on its first call); a plugin removed from the database is removed here too.

``plugins/.shared.json`` records which directories came from the database and at which
digest, so a replica fetches a plugin once per version, and a plugin installed only on this
home (with no database row) is left alone. A plugin in the database replaces a local one of
the same name. Everything runs under the plugins directory's lock (the installer's), so an
install and a sync in two processes on one home never interleave.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vultrino._fs import atomic_write, fsync_tree
from vultrino.errors import InstallError, StoreCorruptError
from vultrino.plugins.install.installer import (
    _REMOVING,
    _STAGING,
    METADATA_FILE,
    Publish,
    _check_name,
    _fsync_dir,
    _locked,
    _move_in,
    _recover,
    _write_file,
)
from vultrino.plugins.manifest import PLUGIN_NAME_RE

if TYPE_CHECKING:
    from vultrino.store.pg_plugins import PluginShelf

__all__ = ["STATE_FILE", "SyncResult", "publisher", "republish", "sync", "withdraw"]

#: In ``plugins/``: which plugin directories came from the database, at which digest.
STATE_FILE = ".shared.json"

#: What of ``.installed.json`` the database row carries as its metadata (the file itself is
#: one of the plugin's files).
_META_KEYS = ("abi", "installed_at", "sha256", "size", "source", "version", "vultrino_version")


@dataclass
class SyncResult:
    """What :func:`sync` did: whether ``plugins/`` changed, and the plugins it refused (name
    -> why, e.g. a file whose bytes do not match their sha256)."""

    changed: bool = False
    problems: dict[str, str] = field(default_factory=dict)


def _read_state(plugins_dir: Path) -> dict[str, str]:
    try:
        data: Any = json.loads((plugins_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: every shared plugin is fetched again
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


def _write_state(plugins_dir: Path, state: Mapping[str, str]) -> None:
    text = json.dumps(dict(sorted(state.items())), indent=2) + "\n"
    atomic_write(plugins_dir / STATE_FILE, text.encode("utf-8"), mode=0o600)


def _files(directory: Path) -> dict[str, bytes]:
    """A staged plugin's files: the regular files at its top level."""
    out: dict[str, bytes] = {}
    for entry in sorted(directory.iterdir()):
        if entry.is_file() and not entry.is_symlink():
            out[entry.name] = entry.read_bytes()
    return out


def publisher(shelf: PluginShelf, plugins_dir: Path) -> Publish:
    """The installer's ``publish`` hook: share the staged plugin through the database (one
    transaction), then note it as this home's copy. Called under the plugins directory's
    lock, just before the staged directory is moved in."""

    def publish(stage: Path, name: str) -> None:
        files = _files(stage)
        try:
            meta: Any = json.loads(files.get(METADATA_FILE, b"{}"))
        except ValueError:
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        digest = shelf.publish(
            name,
            str(meta.get("version", "")),
            files,
            {k: meta[k] for k in _META_KEYS if k in meta},
        )
        state = _read_state(plugins_dir)
        state[name] = digest
        _write_state(plugins_dir, state)

    return publish


def republish(shelf: PluginShelf, plugins_dir: Path, name: str) -> bool:
    """Share this home's copy of plugin ``name`` again, as its directory now is (its
    ``.disabled`` marker included or not: ``plugin disable|enable`` on one replica reaches
    every replica through its next :func:`sync`); False when the plugin is not shared (it
    was installed on this home only), which leaves the database alone."""
    _check_name(name, what="plugin name")
    with _locked(plugins_dir):
        if name not in _read_state(plugins_dir):
            return False
        publisher(shelf, plugins_dir)(plugins_dir / name, name)
    return True


def withdraw(shelf: PluginShelf, plugins_dir: Path, name: str) -> bool:
    """Remove plugin ``name`` from the database (every replica then removes its copy); False
    when it was not shared. The caller removes this home's directory."""
    _check_name(name, what="plugin name")
    with _locked(plugins_dir) if plugins_dir.is_dir() else contextlib.nullcontext():
        gone = shelf.withdraw(name)
        state = _read_state(plugins_dir)
        if state.pop(name, None) is not None:
            _write_state(plugins_dir, state)
    return gone


def sync(shelf: PluginShelf, plugins_dir: Path) -> SyncResult:
    """Make this home's shared plugins what the database holds (see the module docstring).

    A plugin whose row or files fail their checks is not materialised (an earlier copy of it
    from the database is removed: it is no longer what the replicas share) and is reported in
    :attr:`SyncResult.problems`; the others go on. A database that cannot be reached raises
    :class:`~vultrino.errors.StoreUnavailableError` and changes nothing more.
    """
    result = SyncResult()
    listing = shelf.listing()
    plugins_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(plugins_dir):
        _recover(plugins_dir)
        state = _read_state(plugins_dir)
        new = dict(state)
        try:
            for name, digest in sorted(listing.items()):
                if not PLUGIN_NAME_RE.fullmatch(name):
                    result.problems[name] = (
                        f"the database {shelf.location} holds a shared plugin named {name!r}, "
                        "which is not a plugin name; it is not used"
                    )
                    continue
                if new.get(name) == digest and (plugins_dir / name).is_dir():
                    continue
                try:
                    row = shelf.get(name)
                    if row is None:  # removed since the listing
                        continue
                    _materialise(plugins_dir, name, shelf.contents(row))
                    new[name] = row.digest
                except (StoreCorruptError, InstallError) as exc:
                    result.problems[name] = str(exc)
                    if new.pop(name, None) is not None:
                        _discard(plugins_dir, name)
                result.changed = True
            for name in sorted(set(new) - set(listing)):
                _discard(plugins_dir, name)
                del new[name]
                result.changed = True
        finally:
            if new != state:
                _write_state(plugins_dir, new)
    return result


def _materialise(plugins_dir: Path, name: str, files: Mapping[str, bytes]) -> None:
    """Write ``files`` as ``plugins/<name>`` in one rename (replacing what is there)."""
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{os.getpid()}-", dir=plugins_dir))
    try:
        stage = staging / "plugin"
        stage.mkdir(mode=0o755)
        os.chmod(stage, 0o755)  # noqa: S103 - not group/world-writable, whatever the umask
        for fname, data in files.items():
            if "/" in fname or fname in {"", ".", ".."}:
                raise InstallError(f"shared plugin {name}: refused the file name {fname!r}")
            _write_file(stage / fname, data)
        fsync_tree(stage)
        target = plugins_dir / name
        try:
            _move_in(stage, target, name, replacing=os.path.lexists(target))
        except OSError as exc:
            raise InstallError(
                f"cannot place shared plugin {name} in {target}: {exc.strerror or exc}",
                plugin=name,
            ) from exc
        _fsync_dir(plugins_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _discard(plugins_dir: Path, name: str) -> None:
    """Remove this home's copy of a shared plugin (one rename, then the tree)."""
    target = plugins_dir / name
    if target.is_symlink():
        target.unlink()
        return
    if not target.is_dir():
        return
    doomed = plugins_dir / f"{_REMOVING}{os.getpid()}-{name}-{os.urandom(4).hex()}"
    os.rename(target, doomed)
    _fsync_dir(plugins_dir)
    shutil.rmtree(doomed, ignore_errors=True)
