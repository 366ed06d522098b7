"""Unlock sessions: a per-user agent that holds a home's derived store key in memory.

``vultrino unlock`` verifies the password, then starts :mod:`vultrino.unlock.daemon` with the
derived key (never the password); later commands of the same user fetch the key over a 0600
Unix socket and open the store with it, so they pay no Argon2 and ask for nothing, like
ssh-agent or gpg-agent. The agent forgets the key and exits on its timeout, on ``vultrino
lock``, on SIGTERM/SIGHUP, when its socket is removed (the runtime directory goes at logout),
and when the store's header binding changes (a rekey): it never hands out a stale key.
docs/security.md has the threat model; :mod:`vultrino.unlock._wire` the socket and the wire.

Knows nothing of the store's format: a key is 32 bytes for a header binding (bytes), and the
agent compares the binding with the first bytes of the store file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vultrino.errors import ConfigError, UnlockSessionError
from vultrino.unlock._wire import (
    KEY_SIZE,
    check_dir,
    check_socket,
    peer_uid,
    read_line,
    send_json,
    socket_path,
)

__all__ = [
    "DEFAULT_SECONDS",
    "MAX_SECONDS",
    "Session",
    "fetch_key",
    "lock",
    "parse_duration",
    "socket_path",
    "start",
    "status",
]

DEFAULT_SECONDS = 15 * 60
MAX_SECONDS = 7 * 24 * 3600
_MAX_ANSWER = 4096
_TIMEOUT = 5.0  # a local agent answers in microseconds; a hung one must not hang a command
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)([smhd])")


@dataclass(frozen=True)
class Session:
    """A running unlock agent: its pid, when it locks (Unix time), and its socket."""

    pid: int
    expires_at: float
    socket: Path

    @property
    def seconds_left(self) -> float:
        return max(0.0, self.expires_at - time.time())


def parse_duration(text: str) -> int:
    """``90s``, ``15m``, ``1h``, ``2h30m``, ``1d`` (or a bare number of seconds) -> seconds;
    ConfigError naming the accepted forms otherwise."""
    raw = text.strip().lower()
    if raw.isdigit():
        seconds = int(raw)
    else:
        parts = _DURATION.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise ConfigError(
                f"--for {text!r}: expected a duration such as 30s, 15m, 1h, 2h30m or 1d"
            )
        seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if not 1 <= seconds <= MAX_SECONDS:
        raise ConfigError(
            f"--for {text!r}: a session lasts from 1 second to {MAX_SECONDS // 86400} days"
        )
    return seconds


def _connect(home_root: Path) -> socket.socket | None:
    """A connection to the home's agent; None when none runs (no socket, or nobody listens)."""
    path = socket_path(home_root)
    if not check_dir(path.parent, create=False) or not check_socket(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(_TIMEOUT)
    try:
        sock.connect(os.fspath(path))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return None  # a socket left by an agent that died; the next `unlock` replaces it
        raise UnlockSessionError(
            f"cannot reach the unlock agent at {path} ({exc.strerror or exc}); run "
            "`vultrino lock`, then `vultrino unlock` again"
        ) from exc
    uid = peer_uid(sock)
    if uid is not None and uid != os.getuid():
        sock.close()
        raise UnlockSessionError(
            f"refusing the unlock agent at {path}: it runs as user {uid}, not as you; remove "
            "the socket, then run `vultrino unlock` again"
        )
    return sock


def _ask(home_root: Path, op: str) -> tuple[socket.socket, dict[str, Any]] | None:
    sock = _connect(home_root)
    if sock is None:
        return None
    try:
        send_json(sock, {"op": op})
        return sock, read_line(sock)
    except (OSError, ValueError):
        sock.close()
        return None  # it exited meanwhile (a timeout, a lock): as if it had not been there


def _session(home_root: Path, reply: dict[str, Any]) -> Session | None:
    try:
        return Session(int(reply["pid"]), float(reply["expires_at"]), socket_path(home_root))
    except (KeyError, TypeError, ValueError):
        return None


def status(home_root: Path) -> Session | None:
    """The running session of the home, or None when it is locked."""
    asked = _ask(home_root, "status")
    if asked is None:
        return None
    sock, reply = asked
    sock.close()
    return _session(home_root, reply) if reply.get("ok") is True else None


def fetch_key(home_root: Path) -> tuple[bytearray, bytes] | None:
    """The session's key and the header binding it fits, or None when the home is locked
    (an agent whose store was re-keyed locks itself instead of answering)."""
    asked = _ask(home_root, "key")
    if asked is None:
        return None
    sock, reply = asked
    with sock:
        if reply.get("ok") is not True or not isinstance(reply.get("binding"), str):
            return None
        key = bytearray(KEY_SIZE)
        view = memoryview(key)
        got = 0
        try:
            while got < KEY_SIZE:
                n = sock.recv_into(view[got:])
                if n == 0:
                    break
                got += n
        except OSError:
            pass
        view.release()
        if got != KEY_SIZE:
            key[:] = bytes(KEY_SIZE)
            return None
        try:
            binding = bytes.fromhex(reply["binding"])
        except ValueError:
            key[:] = bytes(KEY_SIZE)
            return None
        return key, binding


def lock(home_root: Path) -> bool:
    """Tell the home's agent to forget its key and exit; whether one was running. Returns once
    the agent has removed its socket (or after a few seconds), so a new agent can take it."""
    asked = _ask(home_root, "lock")
    if asked is None:
        return False
    sock, reply = asked
    sock.close()
    path = socket_path(home_root)
    deadline = time.monotonic() + _TIMEOUT
    while os.path.lexists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    return reply.get("ok") is True


def start(
    home_root: Path, store_path: Path, key: bytearray, binding: bytes, seconds: int
) -> Session:
    """Start the home's agent with ``key`` (any running one is locked first) and return the
    session. The key reaches the agent through a pipe, never argv or the environment."""
    import subprocess

    lock(home_root)
    path = socket_path(home_root)
    check_dir(path.parent, create=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_PASSWORD")}
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    setup = {
        "home": str(home_root),
        "store": str(store_path),
        "socket": str(path),
        "binding": binding.hex(),
        "seconds": seconds,
    }
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vultrino.unlock.daemon"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise UnlockSessionError(f"cannot start the unlock agent ({exc.strerror})") from exc
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(setup).encode() + b"\n")
        proc.stdin.write(key)
        proc.stdin.close()
        answer = proc.stdout.readline(_MAX_ANSWER).decode("utf-8", "replace").strip()
    except OSError:
        answer = ""
    finally:
        proc.stdout.close()
        # the process that answered forks the agent and exits at once
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_TIMEOUT)
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    word, _, rest = answer.partition(" ")
    if word == "ok":
        try:
            reply = json.loads(rest)
            return Session(int(reply["pid"]), float(reply["expires_at"]), path)
        except (ValueError, KeyError, TypeError):
            pass
    reason = rest if word == "error" and rest else "it exited without saying why"
    raise UnlockSessionError(f"the unlock agent did not start: {reason}")
