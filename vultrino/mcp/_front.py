"""The stdio front of ``vultrino mcp``: the first answers, before the MCP SDK is imported.

Importing the SDK (its pydantic models) costs about a second of CPU, longer than a host is
willing to wait for ``initialize``. So the stdio transport (``vultrino.mcp.stdio``) claims the
process's fd 0/1 (:func:`claim_stdio`) and starts this front, which needs only the standard
library, while a background thread imports the SDK and the main thread unlocks the store::

    front = StdioFront(wire.stdin, wire.stdout)  # reads stdin from now on; answers nothing yet
    front.start()
    ...unlock the store...
    front.ready()                # from now on (and for what was buffered) it answers
    ...the SDK is imported...
    answered = front.hand_over() # the SDK answers everything from here on

Contract (docs/mcp.md, "Start-up"):

- Every line read is kept and handed to the SDK server unchanged and in order, including the
  ones the front answered: the SDK sees exactly the stream the client sent, so its session is in
  the state it would be in had it read the stream itself. Its own answers to the requests the
  front already answered are dropped (:meth:`StdioFront.hand_over` names them).
- The front answers only an ``initialize`` request that is the client's first JSON message (lines
  that are not JSON do not count; the SDK side answers them with a parse error), and, after it,
  ``ping``. Its ``initialize`` answer is the SDK's: ``initialize_result`` is built from the
  same constants the SDK server is built from (``vultrino.mcp._identity``), and a test compares
  the two for every protocol version. Anything else, or anything it cannot validate, waits for
  the SDK.
- Nothing is written before :meth:`StdioFront.ready`: a wrong password still fails before any
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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

from vultrino.mcp._identity import initialize_result

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


def _plain_ping(message: dict[str, Any]) -> bool:
    params = message.get("params")
    return params is None or params == {}


EOF: Final = None
"""What :meth:`StdioFront.get` returns once stdin is closed."""


class StdioFront:
    """Reads the protocol stream from the start and answers the opening messages.

    ``stdin`` and ``stdout`` are the private protocol streams (see :func:`claim_stdio`). One
    daemon thread reads lines; :meth:`get` hands them over in order.
    """

    def __init__(self, stdin: IO[str], stdout: IO[str]) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._stage = "opening"  # then "serving" (initialize answered) or "aside"
        self._ready = False
        self._handed_over = False
        self._waiting: list[dict[str, Any]] = []  # answers held until ready()
        self._answered: list[int | str] = []
        self._thread = threading.Thread(target=self._read, name="vultrino-mcp-front", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def get(self) -> str | None:
        """The next line read (blocking), or :data:`EOF`."""
        return self._lines.get()

    def ready(self) -> None:
        """Allow answers: the store is unlocked. Answers held so far are written now."""
        with self._lock:
            self._ready = True
            waiting, self._waiting = self._waiting, []
            for answer in waiting:
                self._write(answer)

    def hand_over(self) -> list[int | str]:
        """Stop answering; the ids of the requests the front answered (the SDK's own answers
        to these must be dropped)."""
        with self._lock:
            self._handed_over = True
            for answer in self._waiting:  # never left behind, even without ready()
                self._answered.remove(answer["id"])
            self._waiting = []
            return list(self._answered)

    # -- the reader thread ----------------------------------------------------------------------

    def _read(self) -> None:
        try:
            while True:
                line = self._stdin.readline()
                if not line:
                    break
                with self._lock:
                    if not self._handed_over and self._stage != "aside":
                        self._observe(line)
                    self._lines.put(line)
        except (OSError, ValueError):
            pass  # the stream broke: for the server, the same as the client leaving
        finally:
            self._lines.put(EOF)

    def _observe(self, line: str) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return  # not JSON: the SDK side answers it with a parse error, state untouched
        if self._stage == "opening":
            version = _plain_initialize(message) if _is_request(message, "initialize") else None
            if version is None:
                self._stage = "aside"  # the client opened otherwise: the SDK answers all
                return
            self._stage = "serving"
            self._answer(message, initialize_result(version))
        elif _is_request(message, "ping") and _plain_ping(message):
            self._answer(message, {})

    def _answer(self, request: dict[str, Any], result: dict[str, Any]) -> None:
        rid = _request_id(request)
        assert rid is not None
        if rid in self._answered:
            return  # a reused id: leave it to the SDK
        self._answered.append(rid)
        answer = {"jsonrpc": "2.0", "id": rid, "result": result}
        if self._ready:
            self._write(answer)
        else:
            self._waiting.append(answer)

    def _write(self, answer: dict[str, Any]) -> None:
        try:
            self._stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
            self._stdout.flush()
        except (OSError, ValueError):
            pass  # the client is gone; the SDK side will see the end of stdin
