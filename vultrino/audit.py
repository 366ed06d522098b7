"""The audit log: one JSON object per line per action, never a secret value.

Each record: ``ts`` (UTC ISO-8601), ``alias``, ``plugin``, ``action``, ``agent`` (the agent
profile the call ran under, ``null`` when it ran with no profile), ``outcome`` (``ok``,
``error``, or ``denied`` when an agent profile refused it), ``error`` (the error class or plugin
error code), ``approval`` (``granted``, ``declined`` or ``unavailable``, only when the profile
asked for approval), ``duration_ms``, ``source`` (``cli``, ``mcp`` or ``api``). A string longer
than :data:`MAX_FIELD_CHARS` is cut and marked with its length (an agent can name any alias,
stored or not). Lines are appended with a single ``write`` on an ``O_APPEND`` descriptor, so
concurrent writers never interleave within a line.

:func:`query` reads them back with filters (``vultrino audit``, ``Vultrino.audit``).
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from vultrino.errors import ConfigError

OUTCOMES = ("ok", "error", "denied")
_RELATIVE = re.compile(r"^(\d+)\s*(s|m|min|h|d|w)$")
_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
#: A string field longer than this (an alias, action or plugin name an agent made up) is cut,
#: so one call cannot write megabytes to the log; stored aliases are at most 128 characters.
MAX_FIELD_CHARS = 200


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return f"{value[:MAX_FIELD_CHARS]}...[{len(value)} characters]"
    return value


def append_record(path: Path, **record: Any) -> None:
    """Append one record to ``path`` (created 0600); long strings are cut (MAX_FIELD_CHARS)."""
    record = {
        "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        **{k: _bounded(v) for k, v in record.items()},
    }
    line = (json.dumps(record, separators=(",", ":"), sort_keys=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


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
