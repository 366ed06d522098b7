"""What plugins log, kept per plugin under the home: ``logs/<plugin>.log``.

Every line a plugin writes through the host ``log`` import (and what it prints to stdout or
stderr) reaches :meth:`PluginLogs.sink` after the runtime has cut it and escaped its control
characters and the plugin has scrubbed it of every secret it was handed
(:class:`~vultrino.plugins.wasm.WasmPlugin`): nothing here ever sees a secret. Each line is one
JSON object, ``{"time", "level", "message"}``, appended to a file of mode 0600 in a directory of
mode 0700. When the file passes :data:`MAX_LOG_BYTES` it becomes ``<plugin>.log.1`` (replacing
the previous one) and a new file starts, so a plugin's logs take at most about twice that.

``vultrino plugin logs NAME`` reads them back (:meth:`PluginLogs.tail`, :meth:`PluginLogs.follow`).
A log file that cannot be written (a full disk, a read-only home) loses the line, never the call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["MAX_LOG_BYTES", "LogLine", "PluginLogs"]

_LOGGING_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}

#: A plugin's current log file is rotated when it grows past this many bytes.
MAX_LOG_BYTES = 1024 * 1024
_LEVELS = frozenset({"debug", "info", "warn", "error"})
_FOLLOW_POLL_S = 0.25
# one encoder for every line (``json.dumps`` with an option builds a new one per call: most of
# a line's cost), and the timestamp text made once per second
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_stamp: list[tuple[int, str]] = [(-1, "")]


def _now() -> str:
    """The current UTC second as ISO 8601 text (one item swapped whole: thread-safe)."""
    second = int(time.time())
    cached, text = _stamp[0]
    if cached != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        _stamp[0] = (second, text)
    return text


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line a plugin logged: when (UTC, ISO 8601), at what level, and what it said."""

    time: str
    level: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"time": self.time, "level": self.level, "message": self.message}


class _File:
    """One plugin's open log file (appending), rotated by size."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.handle: IO[bytes] | None = None

    def write(self, data: bytes) -> None:
        with self.lock:
            handle = self.handle
            if handle is None:
                handle = self.handle = _open_append(self.path)
            handle.write(data)
            handle.flush()
            if handle.tell() >= self.max_bytes:
                self._rotate()

    def _rotate(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        with contextlib.suppress(FileNotFoundError):  # another process rotated it first
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))

    def close(self) -> None:
        with self.lock:
            if self.handle is not None:
                self.handle.close()
                self.handle = None


class PluginLogs:
    """The plugins' log files in ``directory`` (the home's ``logs/``)."""

    def __init__(self, directory: Path, *, max_bytes: int = MAX_LOG_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._files: dict[str, _File] = {}
        self._lock = threading.Lock()

    def path(self, plugin: str) -> Path:
        return self.directory / f"{plugin}.log"

    def sink(self, plugin: str) -> Callable[[str, str], None]:
        """The ``log(level, text)`` function that appends ``plugin``'s lines to its file, and
        passes them on to the ``vultrino.plugin.<plugin>`` logger when something listens there
        (an MCP client that set a log level, a script that configured logging) — never to
        Python's last-resort handler, which would print them on the CLI's stderr."""
        logger = logging.getLogger(f"vultrino.plugin.{plugin}")

        def log(level: str, text: str) -> None:
            self.write(plugin, level, text)
            number = _LOGGING_LEVELS.get(level, logging.INFO)
            if logger.isEnabledFor(number) and logger.hasHandlers():
                logger.log(number, "%s", text)

        return log

    def write(self, plugin: str, level: str, text: str) -> None:
        """Append one line (already scrubbed: see the module docstring)."""
        line = {"time": _now(), "level": level if level in _LEVELS else "info", "message": text}
        data = (_ENCODE(line) + "\n").encode("utf-8", "replace")
        with self._lock:
            file = self._files.get(plugin)
            if file is None:
                file = self._files[plugin] = _File(self.path(plugin), self.max_bytes)
        try:
            file.write(data)
        except OSError:
            file.close()  # a full disk or a read-only home loses the line, not the call

    def close(self) -> None:
        with self._lock:
            files = list(self._files.values())
            self._files.clear()
        for file in files:
            file.close()

    def exists(self, plugin: str) -> bool:
        base = self.path(plugin)
        return base.exists() or base.with_name(base.name + ".1").exists()

    def tail(self, plugin: str, count: int) -> list[LogLine]:
        """The last ``count`` lines ``plugin`` logged, oldest first."""
        base = self.path(plugin)
        last: deque[LogLine] = deque(maxlen=max(count, 0))
        for path in (base.with_name(base.name + ".1"), base):
            last.extend(self._lines(path))
        return list(last)

    def follow(
        self, plugin: str, *, last: int = 0, stop: Callable[[], bool] = lambda: False
    ) -> Iterator[LogLine]:
        """The last ``last`` lines ``plugin`` logged, then each line it logs from then on (from
        any process, through rotations), until ``stop()`` is true or the caller stops."""
        path = self.path(plugin)
        handle: IO[bytes] | None = None
        inode: int | None = None
        try:
            try:
                handle = path.open("rb")
                inode = os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                handle = None
            # what is there now: the current file read to its end (the new lines continue
            # from exactly there), after the rotated one
            recent: deque[LogLine] = deque(maxlen=max(last, 0))
            if last > 0:
                recent.extend(self._lines(path.with_name(path.name + ".1")))
            partial = b""
            if handle is not None:
                *whole, partial = handle.read().split(b"\n")
                if last > 0:
                    recent.extend(x for x in map(_parse, whole) if x is not None)
            yield from recent
            while not stop():
                if handle is not None:
                    chunk = handle.read()
                    if chunk:
                        partial += chunk
                        *lines, partial = partial.split(b"\n")
                        for raw in lines:
                            line = _parse(raw)
                            if line is not None:
                                yield line
                        continue
                try:
                    now: int | None = os.stat(path).st_ino
                except FileNotFoundError:
                    now = None
                if now is not None and now != inode:  # rotated (or created): start the new one
                    if handle is not None:
                        handle.close()
                    handle = path.open("rb")
                    inode, partial = now, b""
                    continue
                time.sleep(_FOLLOW_POLL_S)
        finally:
            if handle is not None:
                handle.close()

    @staticmethod
    def _lines(path: Path) -> list[LogLine]:
        try:
            with path.open("rb") as f:
                return [x for x in map(_parse, f) if x is not None]
        except FileNotFoundError:
            return []


def _parse(raw: bytes) -> LogLine | None:
    try:
        data: Any = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    stamp, level, message = (data.get(k) for k in ("time", "level", "message"))
    if not (isinstance(stamp, str) and isinstance(level, str) and isinstance(message, str)):
        return None
    return LogLine(stamp, level, message)


def _open_append(path: Path) -> IO[bytes]:
    """``path`` opened for appending, created 0600 (its directory 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    with contextlib.suppress(OSError):  # an existing file keeps its owner's mode otherwise
        os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab", buffering=0)
