"""The persistent build cache: one directory per plugin source, reused between builds.

``install --build`` builds a copy of the plugin, never the author's directory. The copy and
cargo's target directory live in ``$VULTRINO_HOME/cache/builds/<name>-<hash>/``, where
``<hash>`` is derived from the source's identity (a local directory's real path; an archive's
or a repository's address and ``--subdir``). The next build of the same source finds the
compiled dependencies there, so only the plugin's own crate is compiled again:

* ``src/`` — the source tree, brought up to date before each build by content: a file whose
  bytes changed is written anew (so its modification time is now, later than anything cargo
  built before, even when the author saved it while the previous build ran), an unchanged one
  is left alone (so cargo does not rebuild for it), one gone is deleted;
* ``path-deps/`` — crates vendored from outside the tree (:mod:`._cargo_paths`);
* ``target/`` — cargo's target directory.

The build's sandbox may write to that directory and nowhere else. A cache directory is used
only when it is a real directory (not a link) owned by this user and not writable by others:
one with the wrong mode is deleted and made again (its content could have been planted), one
owned by someone else is refused. Builds of the same source are serialised by a lock on the
directory. Deleting ``cache/builds/`` is always safe: the next build is a full one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from vultrino.errors import InstallError

__all__ = ["cache_key", "checked_dir", "locked", "sync_tree"]

_MODE = 0o700


def cache_key(name: str, identity: str) -> str:
    """The directory name of a plugin source's cache: its name and a digest of ``identity``."""
    digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{name}-{digest}"


def checked_dir(path: Path) -> Path:
    """``path`` as a directory of this user's with mode 0700, made (with its parents) when
    missing, made again when it is a link or others may write to it; :class:`InstallError`
    when it belongs to another user or cannot be made."""
    try:
        path.parent.mkdir(mode=_MODE, parents=True, exist_ok=True)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            path.mkdir(mode=_MODE)
            st = os.lstat(path)
        if st.st_uid != os.getuid():
            raise InstallError(
                f"the build cache {path} belongs to another user (uid {st.st_uid}); it is not "
                "used: remove it (or point VULTRINO_HOME elsewhere) and build again"
            )
        if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) & 0o077:
            # a link, a file, or a directory others could have written to: never trusted
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(path)
            else:
                path.unlink()
            path.mkdir(mode=_MODE)
        os.chmod(path, _MODE)
    except OSError as exc:
        raise InstallError(f"cannot prepare the build cache {path}: {exc.strerror or exc}") from exc
    return path


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (another build of the same source waits)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _same_file(a: Path, b: Path) -> bool:
    """Both regular files with the same permission bits and bytes."""
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    if not (stat.S_ISREG(sa.st_mode) and stat.S_ISREG(sb.st_mode)):
        return False
    if sa.st_size != sb.st_size or stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk = fa.read(1 << 16)
            if chunk != fb.read(1 << 16):
                return False
            if not chunk:
                return True


def sync_tree(src: Path, dst: Path) -> None:
    """Make ``dst`` hold what ``src`` holds (regular files, directories, links), changing only
    what differs: see the module docstring for why by content and not by modification time."""
    dst.mkdir(mode=_MODE, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(dst, topdown=False):  # what src no longer has
        here = Path(dirpath)
        rel = here.relative_to(dst)
        for name in [*filenames, *dirnames]:
            mine, theirs = here / name, src / rel / name
            if os.path.lexists(theirs) and (
                os.path.islink(mine) == os.path.islink(theirs) and mine.is_dir() == theirs.is_dir()
            ):
                continue
            if mine.is_dir() and not mine.is_symlink():
                shutil.rmtree(mine)
            else:
                mine.unlink()
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        out = dst / here.relative_to(src)
        for name in dirnames:
            if (here / name).is_symlink():
                filenames.append(name)  # a link to a directory: synced as a link
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
        for name in dirnames:
            (out / name).mkdir(mode=0o755, exist_ok=True)
        for name in filenames:
            theirs, mine = here / name, out / name
            if theirs.is_symlink():
                target = os.readlink(theirs)
                if not (mine.is_symlink() and os.readlink(mine) == target):
                    if os.path.lexists(mine):
                        mine.unlink()
                    os.symlink(target, mine)
            elif not _same_file(theirs, mine):
                if os.path.lexists(mine):
                    mine.unlink()
                shutil.copyfile(theirs, mine)  # a new modification time: now
                shutil.copymode(theirs, mine)
