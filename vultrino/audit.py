"""The audit log: one JSON object per line per action, never a secret value.

Each record: ``ts`` (UTC ISO-8601), ``alias``, ``plugin``, ``action``, ``outcome`` (``ok`` or
``error``), ``error`` (the error class or plugin error code), ``duration_ms``, ``source``
(``cli``, ``mcp`` or ``api``). Lines are appended with a single ``write`` on an ``O_APPEND``
descriptor, so concurrent writers never interleave within a line.

:class:`AuditLog` keeps that descriptor open between records (each record is still written,
unbuffered, before the action returns). At most every :data:`REOPEN_CHECK_SECONDS` it checks
that the path still names the file it has open and reopens it if not, so a rotated or deleted
log is followed within that bound; records written meanwhile land in the rotated file.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["REOPEN_CHECK_SECONDS", "AuditLog", "append_record", "read_records"]

REOPEN_CHECK_SECONDS = 1.0

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_encode_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _value(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return str(_encode_str(value))
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return repr(value)
    return _dumps(value)


class _Clock:
    """UTC timestamps to the millisecond; the formatting of the whole second is reused."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        t = time.time()
        second = int(t)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S"
            )
            self._second = second
        millis = min(999, int((t - second) * 1000))
        return f"{self._prefix}.{millis:03d}+00:00"


_KEYS: dict[str, str] = {}  # record key -> its JSON text and the separators around it


def _line(ts: str, record: dict[str, Any]) -> bytes:
    out = '{"ts":"' + ts + '"'
    for key, value in record.items():
        head = _KEYS.get(key)
        if head is None:
            head = "," + str(_encode_str(key)) + ":"
            if len(_KEYS) < 64:
                _KEYS[key] = head
        out += head + (_encode_str(value) if type(value) is str else _value(value))
    return (out + "}\n").encode()


class AuditLog:
    """An audit log file kept open for appending; thread-safe; ``close()`` releases it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._name = os.fspath(self.path)
        self._fd: int | None = None
        self._identity: tuple[int, int] = (0, 0)
        self._checked = 0.0
        self._clock = _Clock()
        self._lock = threading.Lock()

    def _open(self) -> int:
        fd = os.open(self._name, _FLAGS, 0o600)
        st = os.fstat(fd)
        self._fd, self._identity, self._checked = fd, (st.st_dev, st.st_ino), time.monotonic()
        return fd

    def _current_fd(self) -> int:
        fd = self._fd
        if fd is None:
            return self._open()
        now = time.monotonic()
        if now - self._checked < REOPEN_CHECK_SECONDS:
            return fd
        self._checked = now
        try:
            st = os.stat(self._name)
            same = (st.st_dev, st.st_ino) == self._identity
        except OSError:
            same = False
        if same:
            return fd
        self._fd = None
        os.close(fd)
        return self._open()

    def append(self, **record: Any) -> None:
        """Append one record (created 0600), written before this returns."""
        self.write(record)

    def write(self, record: dict[str, Any]) -> None:
        """:meth:`append` with the record as a mapping (its keys in order after ``ts``)."""
        with self._lock:
            line = _line(self._clock.now(), record)
            os.write(self._current_fd(), line)

    def close(self) -> None:
        """Close the descriptor (idempotent); the next ``append`` opens it again."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)


def append_record(path: Path, **record: Any) -> None:
    """Append one record to ``path`` (created 0600), opening and closing it."""
    log = AuditLog(path)
    try:
        log.append(**record)
    finally:
        log.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records, oldest first (an absent log is empty)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
