"""The stdio transport: ``vultrino mcp``, serving one client on stdin/stdout.

:func:`serve_stdio` is the one stdio entry point. It claims fd 0/1 and starts the start-up front
(``vultrino.mcp._front``), which answers ``initialize`` and ``ping`` while the SDK is still being
imported, then hands the stream to the SDK server (``vultrino.mcp._relay``). This module and the
front use the standard library only, so the front reads from the first byte; :func:`preload_sdk`
imports the SDK in a background thread meanwhile.

In stdio mode nothing but the protocol reaches the real stdout: fd 1 is pointed at stderr while
serving and the protocol is written to a private duplicate, so a stray ``print`` or a plugin
writing to fd 1 cannot corrupt the stream. fd 0 is pointed at the null device.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from vultrino.mcp._front import StdioFront, claim_stdio

if TYPE_CHECKING:
    from vultrino.core import Vultrino

__all__ = ["preload_sdk", "serve_stdio"]


def preload_sdk() -> threading.Thread:
    """Start importing the server core (and so the SDK) in a background thread.

    That is about a second of CPU, nearly all of it the SDK's models, which both transports
    need; the caller overlaps it with opening and unlocking the store.
    """

    def load() -> None:
        import vultrino.mcp.server  # noqa: F401

    t = threading.Thread(target=load, name="vultrino-mcp-import", daemon=True)
    t.start()
    return t


def serve_stdio(
    v: Vultrino, *, agent: str | None = None, loading: threading.Thread | None = None
) -> None:
    """Serve MCP on stdin/stdout until the client closes stdin (``vultrino mcp``).

    The front reads from the first byte; the store is unlocked meanwhile (the password comes
    from ``VULTRINO_PASSWORD`` or ``VULTRINO_PASSWORD_FILE``; stdin is the protocol, so there is
    no prompt, and the key derivation overlaps the SDK import ``loading`` runs), and only then
    does the front answer. A missing or wrong password, or an unknown ``agent``, fails before
    any protocol traffic. With ``agent`` every request runs under that agent profile.
    """
    loading = loading or preload_sdk()
    with claim_stdio() as wire:
        front = StdioFront(wire.stdin, wire.stdout)
        front.start()
        v.unlock()
        if agent is not None:
            v.agent_profile(agent)  # an unknown agent fails now, before any protocol traffic
        front.ready()
        loading.join()
        from vultrino.mcp import _relay  # the SDK is imported by now; re-raises its failure

        _relay.serve_after_front(v, front, wire, agent=agent)
