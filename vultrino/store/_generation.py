"""``credentials.enc.gen``: a change counter every writer bumps, readable without a system call.

Each writer adds one to the 8-byte little-endian counter while it still holds the store lock,
right after it renamed the new store into place. Readers map the file read-only
(``MAP_SHARED``), so checking "did anything change?" costs one memory read instead of a
``stat``. The counter is only a hint that makes a check cheap: a store replaced by something
that does not bump it (a backup restored with ``cp``, an older Vultrino) is still noticed by
the periodic ``stat`` of the store file (see ``UNSIGNALLED_CHANGE_SECONDS`` in credentials.py).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from pathlib import Path

__all__ = ["Generation", "generation_path_for"]

_COUNTER = struct.Struct("<Q")
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def generation_path_for(store_path: Path) -> Path:
    """``credentials.enc`` -> ``credentials.enc.gen`` in the same directory."""
    return store_path.with_name(store_path.name + ".gen")


def _open(path: Path) -> int:
    fd = os.open(path, _FLAGS, 0o600)
    try:
        if os.fstat(fd).st_size < _COUNTER.size:
            os.ftruncate(fd, _COUNTER.size)  # zero-filled; never shrinks a written counter
    except BaseException:
        os.close(fd)
        raise
    return fd


class Generation:
    """The counter of one store, mapped read-only. Unusable (``read()`` is None) on any error."""

    def __init__(self, store_path: Path) -> None:
        self.path = generation_path_for(store_path)
        self._map: mmap.mmap | None = None
        self._identity: tuple[int, int] = (0, 0)

    def attach(self) -> None:
        """Map the counter (created when absent); re-map it if the file was replaced."""
        try:
            st = os.stat(self.path)
            if self._map is not None and (st.st_dev, st.st_ino) == self._identity:
                return
        except OSError:
            pass
        self.detach()
        with contextlib.suppress(OSError, ValueError):
            fd = _open(self.path)
            try:
                st = os.fstat(fd)
                self._map = mmap.mmap(fd, _COUNTER.size, mmap.MAP_SHARED, mmap.PROT_READ)
                self._identity = (st.st_dev, st.st_ino)
            finally:
                os.close(fd)

    def read(self) -> int | None:
        """The counter as last written by any process, or None when it is not mapped."""
        m = self._map
        if m is None:
            return None
        value: int = _COUNTER.unpack_from(m, 0)[0]
        return value

    def bump(self) -> None:
        """Add one (the caller holds the store lock). Best effort: readers fall back to stat."""
        with contextlib.suppress(OSError):
            fd = _open(self.path)
            try:
                value = _COUNTER.unpack(os.pread(fd, _COUNTER.size, 0).ljust(_COUNTER.size, b"\0"))
                os.pwrite(fd, _COUNTER.pack((value[0] + 1) & 0xFFFFFFFFFFFFFFFF), 0)
            finally:
                os.close(fd)

    def detach(self) -> None:
        m, self._map = self._map, None
        if m is not None:
            m.close()
