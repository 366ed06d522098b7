"""Who the MCP server says it is, in the standard library only.

The server core builds the SDK server from these names, and the stdio server
(``vultrino.mcp._session``) answers ``initialize`` from them without the SDK; a test
(tests/unit/test_mcp_front.py) compares the two answers for every protocol version.
"""

from __future__ import annotations

from typing import Any, Final

from vultrino._version import __version__

__all__ = [
    "HANDSHAKE_VERSIONS",
    "INSTRUCTIONS",
    "MODERN_VERSIONS",
    "SERVER_NAME",
    "SERVER_TITLE",
    "initialize_result",
    "server_capabilities",
]

SERVER_NAME: Final = "vultrino"
SERVER_TITLE: Final = "Vultrino"
INSTRUCTIONS: Final = (
    "Vultrino performs actions that need a secret (authenticated HTTP requests, signatures, "
    "one-time codes) without showing you the secret. Call list_credentials to see the "
    "credentials by alias, then pass an alias as the `credential` argument of a tool."
)

HANDSHAKE_VERSIONS: Final[tuple[str, ...]] = (
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
)
"""The handshake-era protocol versions, oldest first (the SDK's list; a test keeps them equal).
An ``initialize`` naming any other version is answered with the newest of these."""

MODERN_VERSIONS: Final[frozenset[str]] = frozenset({"2026-07-28"})
"""The 2026-07-28-era protocol versions: no handshake, every request carries its own ``_meta``
envelope (the SDK's list; a test keeps them equal)."""


def server_capabilities() -> dict[str, Any]:
    """What the server declares: tools, with ``listChanged``, and resources (the credentials;
    no subscriptions) — the SDK's answer (tested)."""
    return {
        "resources": {"subscribe": False, "listChanged": False},
        "tools": {"listChanged": True},
    }


def initialize_result(requested: str) -> dict[str, Any]:
    """The ``initialize`` result for a client asking for protocol version ``requested``."""
    negotiated = requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[-1]
    return {
        "protocolVersion": negotiated,
        "capabilities": server_capabilities(),
        "serverInfo": {"name": SERVER_NAME, "title": SERVER_TITLE, "version": __version__},
        "instructions": INSTRUCTIONS,
    }
