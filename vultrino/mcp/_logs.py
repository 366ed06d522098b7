"""MCP logging (``logging/setLevel``, ``notifications/message``), in the standard library only.

A client that sets a level with ``logging/setLevel`` receives, as ``notifications/message``,
the log records of the ``vultrino`` loggers at or above that level that belong to it: the
plugin log of the calls it makes (``vultrino.plugin.<name>``, scrubbed of every secret by the
plugin host before it is logged) and Vultrino's own warnings while serving it. Until it sets a
level, nothing is sent.

Which client a record belongs to is the :class:`LogSink` routed to the thread that logs it
(:func:`routed`, set around each request a server runs); the stdio server, which has one client,
also takes the records no request claims (:func:`set_fallback`). Records still reach stderr as
before (Python's last-resort handler, warnings and above) when nothing else is configured.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

__all__ = [
    "LEVELS",
    "LogSink",
    "install",
    "level_of",
    "routed",
    "set_fallback",
]

LEVELS: Final[tuple[str, ...]] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
"""The MCP (RFC 5424) log levels, least severe first."""

_PYTHON_LEVEL: Final[dict[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL + 5,
    "emergency": logging.CRITICAL + 10,
}


def level_of(levelno: int) -> str:
    """The MCP level of a Python log level (the most severe one it reaches)."""
    name = LEVELS[0]
    for level in LEVELS:
        if levelno >= _PYTHON_LEVEL[level]:
            name = level
    return name


Send = Callable[[dict[str, Any]], None]


class LogSink:
    """One client's log channel: its level (None until ``logging/setLevel``) and how a
    ``notifications/message`` params object reaches it (``send``, callable from any thread;
    a failure to deliver drops the entry)."""

    def __init__(self, send: Send, *, _shared: list[str | None] | None = None) -> None:
        self._send = send
        self._level: list[str | None] = [None] if _shared is None else _shared

    @property
    def level(self) -> str | None:
        return self._level[0]

    def set_level(self, level: str) -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r}; one of {', '.join(LEVELS)}")
        self._level[0] = level
        _want(_PYTHON_LEVEL[level])

    def via(self, send: Send) -> LogSink:
        """The same client's channel (its level, now and later) delivering through ``send``:
        one request's own stream."""
        return LogSink(send, _shared=self._level)

    def wants(self, levelno: int) -> bool:
        return self.level is not None and levelno >= _PYTHON_LEVEL[self.level]

    def offer(self, record: logging.LogRecord) -> None:
        if not self.wants(record.levelno):
            return
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format: not worth a crash
            text = str(record.msg)
        self._send({"level": level_of(record.levelno), "logger": record.name, "data": text})


_CURRENT: contextvars.ContextVar[LogSink | None] = contextvars.ContextVar(
    "vultrino_mcp_log_sink", default=None
)
_fallback: list[LogSink | None] = [None]
_busy = threading.local()  # a sink that logs while sending must not loop


@contextlib.contextmanager
def routed(sink: LogSink | None) -> Iterator[None]:
    """Records logged in this context (this thread, for this request) go to ``sink``."""
    token = _CURRENT.set(sink)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def set_fallback(sink: LogSink | None) -> None:
    """The sink of records no request claims (the stdio server's one client), or None."""
    _fallback[0] = sink


class _Router(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sink = _CURRENT.get() or _fallback[0]
        if sink is not None and not getattr(_busy, "on", False):
            _busy.on = True
            try:
                # the client gone or its stream closed: the entry is dropped
                with contextlib.suppress(Exception):
                    sink.offer(record)
            finally:
                _busy.on = False
        # This handler is the only one on the ``vultrino`` logger, so Python's last resort
        # (warnings and above to stderr) would no longer see these records: pass them on.
        last = logging.lastResort
        if last is not None and not logging.getLogger().handlers and record.levelno >= last.level:
            last.handle(record)


_ROUTER: Final = _Router(logging.DEBUG)
_lock = threading.Lock()


def install() -> None:
    """Route the ``vultrino`` loggers' records to the clients' sinks (idempotent)."""
    with _lock:
        root = logging.getLogger("vultrino")
        if _ROUTER not in root.handlers:
            root.addHandler(_ROUTER)


def _want(levelno: int) -> None:
    """Let plugin log records of ``levelno`` be created (a client asked for them). Vultrino's
    own loggers keep their level: what they send a client is their warnings and errors."""
    plugins = logging.getLogger("vultrino.plugin")
    if plugins.getEffectiveLevel() > levelno:
        plugins.setLevel(levelno)
