"""The audit log: one JSON object per line per action, never a secret value.

Each record: ``ts`` (UTC ISO-8601), ``alias``, ``plugin``, ``action``, ``agent`` (the agent
profile the call ran under, ``null`` when it ran with no profile), ``outcome`` (``ok``,
``error``, or ``denied`` when an agent profile refused it), ``error`` (the error class or plugin
error code), ``approval`` (``granted``, ``declined`` or ``unavailable``, only when the profile
asked for approval), ``tool`` (only on an agent's call of a tool outside its profile),
``duration_ms`` (milliseconds to the microsecond, always with a fraction), ``source``
(``cli``, ``mcp`` or ``api``). A string longer than :data:`MAX_FIELD_CHARS` is cut and marked
with its length (an agent can name any alias, stored or not). Lines are appended with a single
``write`` on an ``O_APPEND`` descriptor, so concurrent writers never interleave within a line.

:class:`AuditLog` keeps that descriptor open between records (each record is still written,
unbuffered, before the action returns). At most every :data:`REOPEN_CHECK_SECONDS` it checks
that the path still names the file it has open and reopens it if not, so a rotated or deleted
log is followed within that bound; records written meanwhile land in the rotated file.

:func:`query` reads them back with filters (``vultrino audit``, ``Vultrino.audit``).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from vultrino.errors import ConfigError

__all__ = [
    "MAX_FIELD_CHARS",
    "OUTCOMES",
    "REOPEN_CHECK_SECONDS",
    "AuditLog",
    "append_record",
    "fields_text",
    "json_text",
    "millis_text",
    "parse_since",
    "query",
    "read_records",
]

OUTCOMES = ("ok", "error", "denied")
_RELATIVE = re.compile(r"^(\d+)\s*(s|m|min|h|d|w)$")
_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
#: A string field longer than this (an alias, action or plugin name an agent made up) is cut,
#: so one call cannot write megabytes to the log; stored aliases are at most 128 characters.
MAX_FIELD_CHARS = 200

REOPEN_CHECK_SECONDS = 1.0

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_encode_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _text(value: str) -> str:
    if len(value) > MAX_FIELD_CHARS:
        value = f"{value[:MAX_FIELD_CHARS]}...[{len(value)} characters]"
    return str(_encode_str(value))


def _value(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _text(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return repr(value)
    if kind is dict or kind is list:
        try:
            encoded = _dumps(value)
        except (TypeError, ValueError):  # a value JSON cannot hold
            return _text(str(value))
        return encoded if len(encoded) <= MAX_FIELD_CHARS else _text(encoded)
    # Anything else (a str subclass, a caller's odd alias, a NaN) is written as its bounded
    # text, so a record can neither grow without end nor fail to encode.
    return _text(str(value))


_MILLIS = tuple(f".{ms:03d}+00:00" for ms in range(1000))
_FRACTIONS = tuple(f".{us:03d}" for us in range(1000))


def millis_text(nanos: int) -> str:
    """A duration given in nanoseconds as ``duration_ms`` is written: milliseconds to the
    microsecond, always with a fraction (a JSON float), without float formatting."""
    micros = nanos // 1000
    return str(micros // 1000) + _FRACTIONS[micros % 1000]


class _Clock:
    """UTC timestamps to the millisecond; the formatting of the whole second is reused."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S"
            )
            self._second = second
        return self._prefix + _MILLIS[nanos // 1_000_000]


_KEYS: dict[str, str] = {}  # record key -> its JSON text and the separators around it


def json_text(value: str) -> str:
    """A string field's value as the log writes it: JSON, cut at :data:`MAX_FIELD_CHARS`."""
    return _text(value) if type(value) is str else _value(value)


def fields_text(record: dict[str, Any]) -> str:
    """The JSON text of ``record``'s fields as a line holds them after ``ts`` (each with its
    leading comma), for :meth:`AuditLog.write_text`."""
    out = ""
    for key, value in record.items():
        head = _KEYS.get(key)
        if head is None:
            head = "," + str(_encode_str(key)) + ":"
            if len(_KEYS) < 64:
                _KEYS[key] = head
        out += head + (_text(value) if type(value) is str else _value(value))
    return out


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
        self.write_text(fields_text(record))

    def write_text(self, fields: str) -> None:
        """Append a record whose fields are already text made by :func:`fields_text` (a
        caller that writes the same fields often encodes them once)."""
        with self._lock:
            line = '{"ts":"' + self._clock.now() + '"' + fields + "}\n"
            fd = self._fd
            if fd is None or time.monotonic() - self._checked >= REOPEN_CHECK_SECONDS:
                fd = self._current_fd()
            os.write(fd, line.encode())

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


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``since`` as an aware UTC datetime: relative (``30s``, ``15m``, ``1h``, ``2d``, ``1w``)
    or ISO-8601 (``2026-01-31``, ``2026-01-31T12:00:00Z``; no zone means UTC)."""
    raw = text.strip()
    m = _RELATIVE.match(raw.lower())
    if m:
        return (now or datetime.now(timezone.utc)) - timedelta(
            seconds=int(m.group(1)) * _SECONDS[m.group(2)]
        )
    iso = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise ConfigError(
            f"--since {text[:40]!r} is neither a duration (30s, 15m, 1h, 2d, 1w) nor an "
            "ISO-8601 time (2026-01-31 or 2026-01-31T12:00:00Z)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def query(
    path: Path,
    *,
    agent: str | None = None,
    alias: str | None = None,
    outcome: str | None = None,
    since: str | datetime | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Records of the log at ``path``, oldest first, that match every filter given.

    ``agent`` matches the record's agent (``"-"`` selects records with no agent), ``alias`` and
    ``outcome`` match exactly, ``since`` keeps records at or after that time (see
    :func:`parse_since`), ``limit`` keeps the newest N. A line that is not a JSON object (a
    log damaged by hand) is skipped, not fatal.
    """
    if outcome is not None and outcome not in OUTCOMES:
        raise ConfigError(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
    if limit is not None and limit < 0:
        raise ConfigError("the limit must not be negative")
    cutoff = parse_since(since) if isinstance(since, str) else since
    if cutoff is not None and cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=timezone.utc)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read the audit log {path} ({exc.strerror})") from exc
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        if agent is not None and rec.get("agent") != (None if agent == "-" else agent):
            continue
        if alias is not None and rec.get("alias") != alias:
            continue
        if outcome is not None and rec.get("outcome") != outcome:
            continue
        if cutoff is not None and not _at_or_after(rec.get("ts"), cutoff):
            continue
        out.append(rec)
    if limit is not None:
        out = out[len(out) - limit :] if limit else []
    return out


def _at_or_after(ts: Any, cutoff: datetime) -> bool:
    if not isinstance(ts, str):
        return False
    try:
        when = datetime.fromisoformat(ts[:-1] + "+00:00" if ts.endswith("Z") else ts)
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when >= cutoff
