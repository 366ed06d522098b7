"""The audit log: one JSON object per line per action, never a secret value.

Each record: ``ts`` (UTC ISO-8601), ``alias``, ``plugin``, ``action``, ``outcome`` (``ok`` or
``error``), ``error`` (the error class or plugin error code), ``duration_ms``, ``source``
(``cli``, ``mcp`` or ``api``). Lines are appended with a single ``write`` on an ``O_APPEND``
descriptor, so concurrent writers never interleave within a line.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def append_record(path: Path, **record: Any) -> None:
    """Append one record to ``path`` (created 0600)."""
    record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **record}
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
