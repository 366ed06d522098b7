"""An inter-process lock on a sibling lock file (``credentials.enc.lock``), with a timeout.

``fcntl.flock`` locks belong to the open file description, so they are released by the kernel
when the holder exits or is killed - a crashed writer never leaves the store locked. The lock
file itself is never deleted: deleting it would let two processes lock two different inodes.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from vultrino.errors import StoreError, StoreLockedError

__all__ = ["DEFAULT_LOCK_TIMEOUT", "FileLock", "lock_path_for"]

DEFAULT_LOCK_TIMEOUT = 10.0
_FIRST_WAIT = 0.001
_MAX_WAIT = 0.05


def lock_path_for(store_path: Path) -> Path:
    """``credentials.enc`` -> ``credentials.enc.lock`` in the same directory."""
    return store_path.with_name(store_path.name + ".lock")


class FileLock:
    """``with FileLock(path, timeout=..., shared=False):`` holds flock on ``path`` meanwhile.

    Waits with a short exponential back-off (1 ms up to 50 ms) until ``timeout`` seconds have
    passed, then raises StoreLockedError. Not reentrant: each ``with`` opens its own descriptor.
    """

    def __init__(self, path: Path, *, timeout: float, shared: bool = False) -> None:
        self.path = path
        self.timeout = timeout
        self.shared = shared
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError("FileLock is not reentrant")
        try:
            fd = os.open(
                self.path,
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0),
                0o600,
            )
        except OSError as exc:
            raise StoreError(
                f"cannot open the lock file {self.path} ({exc.strerror}); "
                "check the permissions of its directory"
            ) from exc
        mode = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + self.timeout
        wait = _FIRST_WAIT
        try:
            while True:
                try:
                    fcntl.flock(fd, mode)
                    break
                except BlockingIOError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise StoreLockedError(
                            f"another process has held the store lock {self.path} for more "
                            f"than {self.timeout:g} s; try again, or look for a stuck "
                            "vultrino process"
                        ) from None
                    time.sleep(min(wait, remaining))
                    wait = min(wait * 2, _MAX_WAIT)
                except OSError as exc:
                    raise StoreError(
                        f"cannot lock {self.path} ({exc.strerror}); the file system may not "
                        "support flock - keep the Vultrino home on a local disk"
                    ) from exc
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing the descriptor releases the flock.
            os.close(fd)
