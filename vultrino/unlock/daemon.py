"""The unlock agent: ``python -m vultrino.unlock.daemon``, started by ``vultrino unlock``.

It reads its setup from stdin (one JSON line: home, store, socket, binding, seconds; then the
32-byte key), makes itself undumpable (no core file, ``PR_SET_DUMPABLE`` 0, the key page
``mlock``-ed where allowed), binds the socket 0600 in its 0700 directory, answers ``ok {pid,
expires_at}`` on stdout and forks into the background, where it serves one request per
connection from processes of its own uid (SO_PEERCRED). It forgets the key (zeroes it) and
exits on the first of: its time is up; a ``lock`` request; SIGTERM, SIGHUP or SIGINT; its socket
is removed or replaced (the runtime directory goes at logout); the store file's first bytes no
longer match the binding the key was derived for (a rekey, or the store was removed). It checks
those at least every ``_CHECK_SECONDS`` and before handing out the key.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from vultrino.unlock._wire import (
    KEY_SIZE,
    check_dir,
    check_socket,
    peer_uid,
    read_line,
    send_json,
)

_CHECK_SECONDS = 2.0
_CLIENT_TIMEOUT = 2.0
_PR_SET_DUMPABLE = 4


class _Stop(Exception):  # noqa: N818 - a signal to leave the loop, never escapes main()
    pass


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        for name in ("mlock", "munlock"):  # an address does not fit ctypes' default int
            fn = getattr(libc, name)
            fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
            fn.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def _harden(libc: ctypes.CDLL | None) -> None:
    """No core dump, no ptrace or /proc/PID/mem from other processes of the user (Linux)."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if libc is not None and sys.platform.startswith("linux"):
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    os.umask(0o077)


class _Key:
    """The key in a ctypes buffer that is mlock-ed where the limit allows, and zeroed at the
    end. (The bytes also passed through a pipe buffer and a bytearray, both zeroed.)"""

    def __init__(self, libc: ctypes.CDLL | None, raw: bytearray) -> None:
        self._libc = libc
        self.buf = ctypes.create_string_buffer(KEY_SIZE)
        self.locked = False
        source = (ctypes.c_char * KEY_SIZE).from_buffer(raw)
        ctypes.memmove(self.buf, source, KEY_SIZE)
        del source
        raw[:] = bytes(len(raw))

    def pin(self) -> None:
        """mlock the key's page (memory locks are not inherited by fork: call it after)."""
        if self._libc is not None and not self.locked:
            self.locked = self._libc.mlock(ctypes.addressof(self.buf), KEY_SIZE) == 0

    def view(self) -> memoryview:
        return memoryview(self.buf).cast("B")[:KEY_SIZE]

    def wipe(self) -> None:
        ctypes.memset(self.buf, 0, KEY_SIZE)
        if self.locked and self._libc is not None:
            self._libc.munlock(ctypes.addressof(self.buf), KEY_SIZE)
            self.locked = False


def _read_setup() -> tuple[dict[str, Any], bytearray]:
    """The setup line, then the key straight into a bytearray (read from the descriptor, so no
    buffered copy of the key is left behind)."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte or len(line) > 4096:
            raise ValueError("the setup did not arrive")
        line += byte
    setup = json.loads(bytes(line))
    if not isinstance(setup, dict):
        raise ValueError("the setup is not a JSON object")
    key = bytearray(KEY_SIZE)
    view = memoryview(key)
    got = 0
    while got < KEY_SIZE:
        n = os.readv(0, [view[got:]])
        if n == 0:
            raise ValueError("the key did not arrive whole")
        got += n
    view.release()
    return setup, key


def _store_binding(store: Path, size: int) -> bytes | None:
    """The binding of the store file's header as the store computes it: its first ``size``
    bytes with the format byte (offset 8) zeroed, which changes without a rekey."""
    try:
        with open(store, "rb") as f:
            raw = f.read(size)
    except OSError:
        return None
    return raw[:8] + b"\0" + raw[9:]


def _bind(path: Path) -> socket.socket:
    """Listen at ``path``: 0600, in a 0700 directory; a dead agent's socket is replaced, a live
    one is not."""
    check_dir(path.parent, create=True)
    if check_socket(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            os.unlink(path)
        else:
            raise RuntimeError(f"another unlock agent already serves {path}")
        finally:
            probe.close()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        server.bind(os.fspath(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    server.listen(16)
    return server


class _Agent:
    def __init__(self, setup: dict[str, Any], key: _Key, server: socket.socket) -> None:
        # a KeyError or ValueError here (a malformed setup) is reported by main()
        self.home = str(setup["home"])
        self.store = Path(setup["store"])
        self.socket_path = Path(setup["socket"])
        self.binding = bytes.fromhex(setup["binding"])
        seconds = float(setup["seconds"])
        self.deadline = time.monotonic() + seconds
        self.expires_at = time.time() + seconds
        self.key = key
        self.server = server
        self.inode = os.stat(self.socket_path).st_ino

    def valid(self) -> bool:
        """Still serving: time left, our socket in place, the store re-keyed by no one."""
        if time.monotonic() >= self.deadline:
            return False
        try:
            if os.lstat(self.socket_path).st_ino != self.inode:
                return False
        except OSError:
            return False
        return _store_binding(self.store, len(self.binding)) == self.binding

    def serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.server, selectors.EVENT_READ)
            while self.valid():
                left = self.deadline - time.monotonic()
                if sel.select(timeout=max(0.0, min(left, _CHECK_SECONDS))):
                    try:
                        conn, _ = self.server.accept()
                    except OSError:
                        continue
                    with conn:
                        if not self.answer(conn):
                            return

    def answer(self, conn: socket.socket) -> bool:
        """Serve one request; False when the agent must stop."""
        conn.settimeout(_CLIENT_TIMEOUT)
        try:
            uid = peer_uid(conn)
            if uid is not None and uid != os.getuid():
                return True  # another user: not a word
            request = read_line(conn)
            op = request.get("op")
            if op == "status":
                send_json(conn, self.describe())
            elif op == "key":
                if not self.valid():
                    send_json(conn, {"ok": False, "error": "the session ended; it is locked"})
                    return False
                send_json(conn, {**self.describe(), "binding": self.binding.hex()})
                conn.sendall(self.key.view())
            elif op == "lock":
                send_json(conn, {"ok": True})
                return False
            else:
                send_json(conn, {"ok": False, "error": f"unknown request {op!r}"})
        except (OSError, ValueError):
            pass  # a client that hung up or spoke nonsense: the next one is served
        return True

    def describe(self) -> dict[str, Any]:
        return {"ok": True, "pid": os.getpid(), "expires_at": self.expires_at, "home": self.home}

    def close(self) -> None:
        self.key.wipe()
        self.server.close()
        with contextlib.suppress(OSError):
            if os.lstat(self.socket_path).st_ino == self.inode:
                os.unlink(self.socket_path)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def main() -> None:
    libc = _libc()
    _harden(libc)
    out = sys.stdout.buffer
    try:
        setup, raw = _read_setup()
        key = _Key(libc, raw)
        server = _bind(Path(setup["socket"]))
        agent = _Agent(setup, key, server)
    except Exception as exc:  # reported to `vultrino unlock`, which raises it
        out.write(f"error {exc}\n".encode())
        out.flush()
        sys.exit(1)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _stop)
    pid = os.fork()
    if pid:  # the parent answers and leaves; the agent lives on, adopted by init
        key.wipe()
        out.write(b"ok " + json.dumps({"pid": pid, "expires_at": agent.expires_at}).encode())
        out.write(b"\n")
        out.flush()
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    key.pin()
    try:
        agent.serve()
    except _Stop:
        pass
    finally:
        agent.close()
    os._exit(0)


if __name__ == "__main__":
    main()
