"""The audit log: one JSON object per line per action, never a secret value.

Each record: ``ts`` (UTC ISO-8601), ``alias``, ``plugin``, ``action``, ``outcome`` (``ok`` or
``error``), ``error`` (the error class or plugin error code), ``duration_ms``, ``source``
(``cli``, ``mcp`` or ``api``). A string longer than :data:`MAX_FIELD_CHARS` is cut and marked
with its length (an agent can name any alias, stored or not). Lines are appended with a
single ``write`` on an ``O_APPEND`` descriptor, so concurrent writers never interleave within a
line.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
