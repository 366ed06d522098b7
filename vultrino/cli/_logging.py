"""The CLI's diagnostic log: ``-v`` / ``-vv`` and config.toml's ``[logging]``.

Lines go to stderr (stdout is data, or the MCP channel), from the ``vultrino`` loggers only —
never a third-party library's, whose debug output may quote a request's headers. What the
package logs is metadata (aliases, plugins, actions, outcomes, durations, paths, the names of
parameters), never a secret value; a plugin's own log lines reach ``vultrino.plugin.<name>``
already scrubbed of its credential's secrets.

The level: ``-vv`` DEBUG, ``-v`` INFO, else ``[logging] level``; with none of them no handler is
installed and nothing changes. ``format = "json"`` writes one JSON object per line:
``{"time", "level", "logger", "message"}`` plus the structured fields a line carries.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

#: the attribute a log call's ``extra=`` puts its structured fields under
FIELDS = "vultrino_fields"

_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO}
_LEVELS["debug"] = logging.DEBUG
_NAMES = {logging.ERROR: "error", logging.WARNING: "warn", logging.INFO: "info"}
_NAMES[logging.DEBUG] = "debug"
_NAMES[logging.CRITICAL] = "error"

_installed: list[logging.Handler] = []  # the handler configure() added, if any


def _stamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO  vultrino.pipeline: call ok ...``"""

    def format(self, record: logging.LogRecord) -> str:
        level = _NAMES.get(record.levelno, record.levelname.lower()).upper()
        line = f"{_stamp(record)} {level:<5} {record.name}: {record.getMessage()}"
        if record.exc_info:  # the type and message only: a traceback's locals stay out
            kind, exc = record.exc_info[0], record.exc_info[1]
            line += f" ({kind.__name__ if kind else 'error'}: {exc})"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _stamp(record),
            "level": _NAMES.get(record.levelno, record.levelname.lower()),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(entry, default=str, ensure_ascii=False)


def level_for(verbose: int, configured: str | None) -> int | None:
    """The level to log at: ``-vv`` DEBUG, ``-v`` INFO, else ``[logging] level``; None when
    none of them asks for a log."""
    if verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return logging.INFO
    if configured is not None:
        return _LEVELS[configured]
    return None


def configure(level: int | None, fmt: str) -> None:
    """Send the ``vultrino`` loggers' lines of ``level`` and above to stderr in ``fmt``
    (``text`` or ``json``); ``level`` None removes what an earlier call installed."""
    root = logging.getLogger("vultrino")
    while _installed:
        root.removeHandler(_installed.pop())
    if level is None:
        root.setLevel(logging.NOTSET)
        root.propagate = True
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False  # a library's root handler does not print the line twice
    _installed.append(handler)


def debugging() -> bool:
    """Whether the log runs at DEBUG (``-vv`` or ``[logging] level = "debug"``)."""
    return bool(_installed) and logging.getLogger("vultrino").level <= logging.DEBUG
