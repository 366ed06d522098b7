"""The stdio front of ``vultrino mcp``: reads the stream from the first byte and decides who
serves it (standard library only).

The stdio transport (``vultrino.mcp.stdio``) claims the process's fd 0/1 (:func:`claim_stdio`)
and starts this front while the main thread unlocks the store::

    front = StdioFront(wire.stdin)  # reads stdin from now on; answers nothing yet
    front.start()
    ...unlock the store...
    session = StdioSession(v, wire.stdout)
    if front.attach(session):    # what was held is dispatched now, the rest as it arrives
        session.serve()          # until stdin closes
    else:
        ...the SDK serves the stream: front.get() gives every line, from the first...

Contract (docs/mcp.md, "Start-up"):

- The client's first JSON message decides. A well-formed ``initialize`` request (the shape every
  client sends: ``protocolVersion``, ``capabilities``, ``clientInfo``) opens a handshake-era
  session served by the standard-library server (``vultrino.mcp._session``), which never
  imports the MCP SDK. Anything else (a 2026-07-28 request, a request before ``initialize``, an
  unusual ``initialize``) is served by the SDK (``vultrino.mcp._relay``), whose import starts at
  once, and which then reads every line from that message on, so its session is in the state
  it would be in had it read the stream itself. Lines before the first JSON message are not
  JSON: the session answers them with a parse error either way.
- Nothing is written before :meth:`StdioFront.attach`: a wrong password still fails before any
  protocol traffic.

This module must not import the MCP SDK, nor anything that does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final, Protocol

__all__ = ["EOF", "StdioFront", "Wire", "claim_stdio"]


@dataclass
class Wire:
    """The private protocol streams of the stdio server."""

    stdin: io.TextIOWrapper
    stdout: io.TextIOWrapper


@contextlib.contextmanager
def claim_stdio() -> Iterator[Wire]:
    """Move the protocol to private duplicates of fd 0/1 and divert the originals.

    While serving, fd 1 points at stderr and fd 0 at the null device: anything else in the
    process (a print, a library, a plugin's WASI stdout, a child) cannot write a byte into the
    protocol stream or steal a byte of it. Both are restored on exit.
    """
    sys.stdout.flush()
    wire_in = os.dup(0)
    wire_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(2, 1)
        os.dup2(devnull, 0)
    finally:
        os.close(devnull)
    stdin = io.TextIOWrapper(
        os.fdopen(wire_in, "rb", closefd=False), encoding="utf-8", errors="replace"
    )
    stdout = io.TextIOWrapper(
        os.fdopen(wire_out, "wb", closefd=False), encoding="utf-8", newline="\n"
    )
    try:
        yield Wire(stdin, stdout)
    finally:
        with contextlib.suppress(OSError, ValueError):
            stdout.flush()
        os.dup2(wire_out, 1)
        os.dup2(wire_in, 0)
        # The reader thread may still be blocked on wire_in; closing it under the thread could
        # hand the number to another file, so the duplicates live until the process ends.


def _request_id(message: dict[str, Any]) -> int | str | None:
    rid = message.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (int, str)):
        return None
    return rid


_REQUEST_KEYS: Final = frozenset({"jsonrpc", "id", "method", "params"})


def _is_request(message: Any, method: str) -> bool:
    return (
        isinstance(message, dict)
        and set(message) <= _REQUEST_KEYS
        and message.get("jsonrpc") == "2.0"
        and message.get("method") == method
        and _request_id(message) is not None
    )


def _plain_initialize(message: dict[str, Any]) -> str | None:
    """The requested version of a well-formed handshake ``initialize``; None otherwise.

    Only the shape every client sends is accepted; anything unusual (a 2026-era ``_meta``
    envelope, odd types) is left to the SDK, whose validation is the reference.
    """
    params = message.get("params")
    if not isinstance(params, dict) or not set(params) <= {
        "protocolVersion",
        "capabilities",
        "clientInfo",
    }:
        return None
    version = params.get("protocolVersion")
    info = params.get("clientInfo")
    if not isinstance(version, str) or not isinstance(params.get("capabilities"), dict):
        return None
    if not isinstance(info, dict) or not all(
        isinstance(info.get(k), str) for k in ("name", "version")
    ):
        return None
    if not set(info) <= {"name", "version", "title"} or not isinstance(info.get("title", ""), str):
        return None
    return version


EOF: Final = None
"""What :meth:`StdioFront.get` returns once stdin is closed."""


class _Receiver(Protocol):
    def receive(self, line: str) -> None: ...

    def receive_eof(self) -> None: ...

    def hand_over(self) -> None: ...


class StdioFront:
    """Reads the protocol stream from the start and routes each line.

    ``stdin`` is the private protocol input (see :func:`claim_stdio`). One
    daemon thread reads lines: those for the SDK are queued for :meth:`get`; those for the
    session are held until :meth:`attach`, then dispatched by this thread as they arrive.
    """

    def __init__(self, stdin: IO[str], *, on_sdk: Callable[[], object] | None = None) -> None:
        self._stdin = stdin
        self._on_sdk = on_sdk  # called (on the reader thread) once the SDK is known to serve
        self._lines: queue.Queue[str | None] = queue.Queue()  # for the SDK
        self._lock = threading.Lock()
        self._decided = False  # the first JSON message has been read
        self.to_sdk = False  # ... and it hands the stream to the SDK
        self._held: list[str | None] = []  # for the session, until attach()
        self._session: _Receiver | None = None
        self._thread = threading.Thread(target=self._read, name="vultrino-mcp-front", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def get(self) -> str | None:
        """The next line for the SDK (blocking), or :data:`EOF`."""
        return self._lines.get()

    def attach(self, session: _Receiver) -> bool:
        """Start answering: dispatch the lines held so far to ``session`` and, from now on,
        each line as it arrives. False when the SDK serves the stream instead (the session is
        told so as soon as that is known, here or later)."""
        with self._lock:
            self._session = session
            held, self._held = self._held, []
            for line in held:
                if line is EOF:
                    session.receive_eof()
                else:
                    session.receive(line)
            if self.to_sdk:
                session.hand_over()
            return not self.to_sdk

    # -- the reader thread ----------------------------------------------------------------------

    def _read(self) -> None:
        try:
            while True:
                line = self._stdin.readline()
                if not line:
                    break
                self._route(line)
        except (OSError, ValueError):
            pass  # the stream broke: for the server, the same as the client leaving
        finally:
            self._route(EOF)

    def _route(self, line: str | None) -> None:
        with self._lock:
            if not self._decided and line is not EOF:
                self._decide(line)
            if self.to_sdk:
                self._lines.put(line)
                return
            session = self._session
            if session is None:
                self._held.append(line)
                return
        if line is EOF:
            session.receive_eof()
        else:
            session.receive(line)

    def _decide(self, line: str) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return  # not JSON: answered with a parse error, and the opening is still to come
        self._decided = True
        if _is_request(message, "initialize") and _plain_initialize(message) is not None:
            return
        self.to_sdk = True
        if self._on_sdk is not None:
            self._on_sdk()
        if self._session is not None:
            self._session.hand_over()
