"""The stdio transport: ``vultrino mcp``, serving one client on stdin/stdout.

:func:`serve_stdio` is the one stdio entry point. It claims fd 0/1 and starts the front
(``vultrino.mcp._front``), which reads from the first byte while the store is unlocked. A client
that opens with ``initialize`` (every desktop host) is then served by the standard-library
server (``vultrino.mcp._session``), which never imports the MCP SDK; any other opening (a
2026-07-28 client) by the SDK server (``vultrino.mcp._relay``), whose import starts as soon as
the front has read that opening. This module, the front and the session use the standard
library only.

In stdio mode nothing but the protocol reaches the real stdout: fd 1 is pointed at stderr while
serving and the protocol is written to a private duplicate, so a stray ``print`` or a plugin
writing to fd 1 cannot corrupt the stream. fd 0 is pointed at the null device.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from vultrino.mcp._front import StdioFront, claim_stdio
from vultrino.mcp._session import StdioSession

if TYPE_CHECKING:
    from vultrino.core import Vultrino

__all__ = ["preload_sdk", "serve_stdio"]


def preload_sdk() -> threading.Thread:
    """Start importing the SDK server core in a background thread.

    That is about a second of CPU, nearly all of it the SDK's models; the caller overlaps it
    with what it does meanwhile (unlocking the store).
    """

    def load() -> None:
        import vultrino.mcp.server  # noqa: F401

    t = threading.Thread(target=load, name="vultrino-mcp-import", daemon=True)
    t.start()
    return t


def serve_stdio(v: Vultrino, *, agent: str | None = None) -> None:
    """Serve MCP on stdin/stdout until the client closes stdin (``vultrino mcp``).

    The front reads from the first byte; the store is unlocked meanwhile (the password comes
    from ``VULTRINO_PASSWORD`` or ``VULTRINO_PASSWORD_FILE``; stdin is the protocol, so there is
    no prompt), and only then is anything answered. A missing or wrong password, or an unknown
    ``agent``, fails before any protocol traffic. With ``agent`` every request runs under that
    agent profile.
    """
    loading: list[threading.Thread] = []
    with claim_stdio() as wire:
        front = StdioFront(wire.stdin, on_sdk=lambda: loading.append(preload_sdk()))
        front.start()
        v.unlock()
        if agent is not None:
            v.agent_profile(agent)  # an unknown agent fails now, before any protocol traffic
        session = StdioSession(v, wire.stdout, agent=agent)
        front.attach(session)
        session.serve()  # returns when stdin closes, or at once if the SDK serves the stream
        if not front.to_sdk:
            return
        for t in loading:
            t.join()
        from vultrino.mcp import _relay  # imports the SDK (re-raising a failure to import it)

        _relay.serve_after_front(v, front, wire, agent=agent)
