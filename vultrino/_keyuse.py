"""When each API key was last used: a side file beside the store, written in batches.

Recording a use must not make every request a write of the sealed store (an Argon2id-keyed,
fsynced, lock-serialised rewrite of every credential). The server notes uses in memory
(:meth:`KeyUse.note`, a dict assignment) and writes them at most every few seconds and at
shutdown (:meth:`KeyUse.flush`) to ``$VULTRINO_HOME/keys-last-used.json`` (mode 0600): a map
from key id to an ISO-8601 UTC time. It holds no secret — ids and times only — and losing it
loses nothing but those times. ``vultrino key list`` reads it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from vultrino._fs import atomic_write

__all__ = ["FILE_NAME", "KeyUse", "read"]

FILE_NAME = "keys-last-used.json"
_MAX_BYTES = 4 << 20


def read(home: Path) -> dict[str, str]:
    """The last uses the file records (an absent or unreadable file: none)."""
    path = Path(home) / FILE_NAME
    try:
        if path.stat().st_size > _MAX_BYTES:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


class KeyUse:
    """Uses noted since the last flush (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, float] = {}

    def note(self, key_id: str) -> None:
        self._pending[key_id] = time.time()  # one dict store: atomic under the GIL

    def flush(self, home: Path) -> bool:
        """Merge the noted uses into the file (atomically); True when anything was written."""
        with self._lock:
            if not self._pending:
                return False
            pending, self._pending = self._pending, {}
            stamps = {
                k: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v)) for k, v in pending.items()
            }
            merged = {**read(home), **stamps}
            try:
                atomic_write(
                    Path(home) / FILE_NAME,
                    json.dumps(merged, sort_keys=True).encode(),
                    mode=0o600,
                )
            except OSError:
                # keep them for the next flush; a last-used time is never worth failing a call
                for key, value in pending.items():
                    self._pending.setdefault(key, value)
                return False
            return True
