"""What the unlock agent and its clients share: where the socket is, how it is checked, the
wire format. Standard library only.

The socket of a home is ``<runtime dir>/vultrino/<hash>.sock``: the runtime dir is
``$XDG_RUNTIME_DIR`` when it names a directory, else ``<temp dir>/vultrino-<uid>``; the hash is
the first 24 hex digits of SHA-256 over the home's resolved path, so each home has its own
agent. The ``vultrino`` directory is 0700 and the socket 0600, both owned by the user; anything
else is refused, by the agent and by every client.

One request per connection: the client sends one JSON line (``{"op": "status" | "key" |
"lock"}``); the agent answers one JSON line, and for ``key`` then exactly ``KEY_SIZE`` raw bytes
of the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

from vultrino.errors import UnlockSessionError

__all__ = [
    "KEY_SIZE",
    "MAX_LINE",
    "check_dir",
    "check_socket",
    "peer_uid",
    "read_line",
    "runtime_dir",
    "send_json",
    "socket_path",
]

KEY_SIZE = 32
MAX_LINE = 4096
#: sun_path holds 108 bytes on Linux, 104 on the BSDs; stay under both.
_MAX_SOCKET_PATH = 100


def runtime_dir() -> Path:
    """The directory that holds the sockets (not created here)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return Path(xdg) / "vultrino"
    return Path(tempfile.gettempdir()) / f"vultrino-{os.getuid()}"


def socket_path(home_root: Path) -> Path:
    """The socket of the unlock agent of the home at ``home_root``."""
    digest = hashlib.sha256(os.fsencode(home_root.resolve())).hexdigest()[:24]
    path = runtime_dir() / f"{digest}.sock"
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise UnlockSessionError(
            f"the unlock agent's socket path {path} is too long for a Unix socket; set "
            "XDG_RUNTIME_DIR (or TMPDIR) to a shorter directory"
        )
    return path


def _owned_private(st: os.stat_result, path: Path, what: str, mode: int) -> None:
    if st.st_uid != os.getuid():
        raise UnlockSessionError(
            f"refusing the unlock agent's {what} {path}: it belongs to user {st.st_uid}, not to "
            f"you ({os.getuid()}); another user may have planted it - remove it, then run "
            "`vultrino unlock` again"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise UnlockSessionError(
            f"refusing the unlock agent's {what} {path}: it is mode "
            f"{stat.S_IMODE(st.st_mode):04o}, not {mode:04o}, so other users could reach it; "
            f"remove it (`rm -r {path}`), then run `vultrino unlock` again"
        )


def check_dir(path: Path, *, create: bool) -> bool:
    """Whether the socket directory exists (made 0700 when ``create``); UnlockSessionError when
    it is a link, not a directory, someone else's, or reachable by others."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return False
        try:
            os.mkdir(path, 0o700)
            st = os.lstat(path)
        except OSError as exc:
            raise UnlockSessionError(
                f"cannot create the unlock agent's directory {path} ({exc.strerror})"
            ) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise UnlockSessionError(
            f"refusing the unlock agent's directory {path}: it is not a directory (a link or a "
            "file was planted there); remove it, then run `vultrino unlock` again"
        )
    _owned_private(st, path, "directory", 0o700)
    return True


def check_socket(path: Path) -> bool:
    """Whether a socket is at ``path``; UnlockSessionError when something else is there, or a
    socket that is not 0600 and the user's own."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise UnlockSessionError(
            f"refusing the unlock agent's socket {path}: it is not a socket; remove it, then "
            "run `vultrino unlock` again"
        )
    _owned_private(st, path, "socket", 0o600)
    return True


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end (SO_PEERCRED); None where the platform has no
    such option (then the 0700 directory and the 0600 socket are the guard)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None or not sys.platform.startswith("linux"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def send_json(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")


def read_line(sock: socket.socket) -> dict[str, Any]:
    """One JSON object line (at most MAX_LINE bytes), read a byte at a time so that nothing
    after the newline (the key) lands in an immutable buffer. ValueError when it is not."""
    buf = bytearray()
    while len(buf) <= MAX_LINE:
        chunk = sock.recv(1)
        if not chunk:
            raise ValueError("the connection closed before a whole line")
        if chunk == b"\n":
            message = json.loads(bytes(buf))
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
            return message
        buf += chunk
    raise ValueError("line too long")
