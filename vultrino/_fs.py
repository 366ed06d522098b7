"""Writing files so that a crash leaves the old content or the new, never a piece of either.

The one implementation every writer of a whole file uses (the credential store, the module
cache, the manifest cache, the MCP and agent token files, downloads): write a temp file in the
same directory with O_EXCL and the final mode, fsync it, ``os.replace`` it over the target (or,
``exclusive``, hard-link it to a name that must not exist yet), fsync the directory. The temp
file is removed on every path out but a SIGKILL; it is named ``.<name>.<pid>.<random>.tmp``
(:func:`temp_prefix`, :data:`TEMP_SUFFIX`), hidden and never matching a pattern for the target's
own names, so a writer holding a lock can sweep up what dead writers left.

A leaf: imports nothing of Vultrino. Errors are plain ``OSError``; each caller says what failed
in its own terms.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "TEMP_SUFFIX",
    "atomic_write",
    "atomic_writer",
    "fsync_dir",
    "fsync_tree",
    "temp_prefix",
]

TEMP_SUFFIX = ".tmp"

_CREATE = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)
#: A filesystem that cannot sync a directory answers these; there is nothing more to do there.
_NO_DIR_SYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})
#: ``os.link`` cannot be used on this filesystem (FAT, some network mounts).
_NO_LINK = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV})


def temp_prefix(path: Path) -> str:
    """The start of the name of every temp file written for ``path``: ``.<name>.``."""
    return f".{path.name}."


def _temp_for(path: Path) -> Path:
    return path.with_name(f"{temp_prefix(path)}{os.getpid()}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


@contextlib.contextmanager
def atomic_writer(
    path: Path, *, mode: int = 0o600, fsync: bool = True, fsync_parent: bool | None = None
) -> Iterator[BinaryIO]:
    """A binary file to write; when the block ends without an error it replaces ``path``.

    ``mode`` is the file's mode whatever the umask. ``fsync`` syncs the file before the rename
    and the directory after it (``fsync_parent=False``: the caller syncs the directory itself,
    with :func:`fsync_dir`). On an error, or when the block raises, ``path`` is untouched and
    the temp file is gone.
    """
    path = Path(path)
    tmp = _temp_for(path)
    fd = os.open(tmp, _CREATE, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away
            fh = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        with fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync if fsync_parent is None else fsync_parent:
        fsync_dir(path.parent)


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    fsync: bool = True,
    fsync_parent: bool | None = None,
    exclusive: bool = False,
) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_writer`).

    ``exclusive``: create ``path`` only if it does not exist — ``FileExistsError`` otherwise,
    whoever won the race; a reader never sees the file half written. On a filesystem without
    hard links the file is created in place with O_EXCL instead.
    """
    path = Path(path)
    if not exclusive:
        with atomic_writer(path, mode=mode, fsync=fsync, fsync_parent=fsync_parent) as fh:
            fh.write(data)
        return
    tmp = _temp_for(path)
    try:
        _create_in_place(tmp, data, mode=mode, fsync=fsync)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            _create_in_place(path, data, mode=mode, fsync=fsync)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    if fsync if fsync_parent is None else fsync_parent:
        fsync_dir(path.parent)


def _create_in_place(path: Path, data: bytes, *, mode: int, fsync: bool) -> None:
    """Write a new file (O_EXCL) at ``path``; on an error it is removed again."""
    fd = os.open(path, _CREATE, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fd, mode)
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a rename, a new file) durable.

    Raises OSError, except where the filesystem cannot sync a directory at all."""
    fd = os.open(
        directory, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_DIRECTORY", 0)
    )
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_SYNC:
            raise
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """fsync every file below ``directory``, then every directory, deepest first.

    Symbolic links are not followed."""
    for root, _dirs, files in os.walk(directory, topdown=False):
        for name in files:
            entry = os.path.join(root, name)
            if os.path.islink(entry):
                continue
            fd = os.open(entry, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))
