"""Is a Rust plugin's module up to date with its sources, and where did cargo put it?

* :func:`built_module`: the module ``cargo build`` left in the author's ``target/`` (for
  ``wasm32-wasip1``, ``wasm32-wasi`` or ``wasm32-unknown-unknown``, release), newest first;
  ``plugin install DIR`` uses it when no module sits beside ``plugin.toml``.
* :func:`newer_sources`: the sources (``src/**``, ``Cargo.toml``, ``Cargo.lock``,
  ``build.rs``) changed after a module was written; a non-empty answer means the module may
  not hold the author's latest changes.
* :func:`signature`: what the plugin directory looks like (every file but cargo's target
  directories and ``.git``), for ``plugin dev``'s polling watcher.

Nothing here follows a symbolic link out of the plugin directory or reads a file's content.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["MAX_WATCHED", "WASM_TARGETS", "built_module", "newer_sources", "signature"]

#: The target triples a plugin module can be built for, in the order they are preferred.
WASM_TARGETS = ("wasm32-wasip1", "wasm32-wasi", "wasm32-unknown-unknown")
#: Files a build reads besides ``src/``.
_TOP_SOURCES = ("Cargo.toml", "Cargo.lock", "build.rs")
#: The watcher stops counting past this many files (a directory that large is not a plugin).
MAX_WATCHED = 20_000
_SKIPPED = (".git", "target", "node_modules", "__pycache__")


def _is_target_dir(path: Path, name: str) -> bool:
    return name in _SKIPPED or (path / "CACHEDIR.TAG").is_file()


def built_module(project: Path, wasm_module: str) -> Path | None:
    """The newest ``target/<wasm triple>/release/<wasm_module>`` inside ``project`` (a regular
    file, not a link), or None."""
    found: list[tuple[int, Path]] = []
    for triple in WASM_TARGETS:
        path = project / "target" / triple / "release" / wasm_module
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and not os.path.islink(project / "target"):
            found.append((st.st_mtime_ns, path))
    if not found:
        return None
    return max(found, key=lambda f: f[0])[1]


def _source_files(project: Path) -> list[Path]:
    files = [project / name for name in _TOP_SOURCES]
    src = project / "src"
    if src.is_dir() and not src.is_symlink():
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = [d for d in dirnames if not Path(dirpath, d).is_symlink()]
            files.extend(Path(dirpath) / f for f in filenames)
    return files


def newer_sources(project: Path, module: Path) -> list[str]:
    """The sources of the crate in ``project`` modified after ``module`` was written, as
    paths relative to ``project``, newest first; [] when the module is up to date."""
    try:
        built = os.stat(module).st_mtime_ns
    except OSError:
        return []
    newer: list[tuple[int, str]] = []
    for path in _source_files(project):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mtime_ns > built:
            newer.append((st.st_mtime_ns, path.relative_to(project).as_posix()))
    return [name for _, name in sorted(newer, reverse=True)]


def signature(project: Path) -> str:
    """A string that changes when any file of ``project`` is added, removed or modified
    (its path, size, modification time and inode), cargo's target directories and ``.git``
    left out. Links are listed, never followed."""
    parts: list[str] = []
    for dirpath, dirnames, filenames in os.walk(project):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not _is_target_dir(here / d, d) and not (here / d).is_symlink()
        )
        for name in sorted(filenames):
            try:
                st = os.lstat(here / name)
            except OSError:
                continue
            rel = (here / name).relative_to(project).as_posix()
            parts.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
            if len(parts) > MAX_WATCHED:
                return "|".join(parts)
    return "|".join(parts)
