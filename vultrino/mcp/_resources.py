"""Credentials as MCP resources, whatever the transport (stdlib only).

The original Vultrino lists each credential as a resource ``vultrino://credential/ALIAS``.
Here ``resources/list`` lists the credentials the caller may see (an agent's or a key's
profile decides, as for ``list_credentials``) and ``resources/read`` returns one credential's
metadata as JSON — the same document as ``get_credential_info``, secret fields masked, never
a value. The stdio server (``vultrino.mcp._session``) and the SDK server core
(``vultrino.mcp.server``) both answer from these functions, from worker threads.
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import quote, unquote

from vultrino.core import Vultrino
from vultrino.errors import CredentialNotFoundError, VultrinoError
from vultrino.mcp._tools import INVALID_PARAMS, INVALID_REQUEST, RpcError

__all__ = [
    "MIME_TYPE",
    "RESOURCE_NOT_FOUND",
    "URI_PREFIX",
    "list_resources",
    "read_resource",
    "resource_uri",
]

URI_PREFIX: Final = "vultrino://credential/"
MIME_TYPE: Final = "application/json"
#: The MCP specification's error code for a resource that does not exist.
RESOURCE_NOT_FOUND: Final = -32002


def resource_uri(alias: str) -> str:
    return URI_PREFIX + quote(alias, safe="")


def _calls(v: Vultrino, agent: str | None) -> Any:
    return v if agent is None else v.as_agent(agent)


def list_resources(v: Vultrino, agent: str | None) -> list[dict[str, Any]]:
    """The ``resources`` of a ``resources/list`` answer: one per credential the caller sees."""
    try:
        infos = _calls(v, agent).credentials()
    except VultrinoError as exc:  # a role without `read`, an unreadable store
        raise RpcError(INVALID_REQUEST, str(exc)) from None
    return [
        {
            "uri": resource_uri(c.alias),
            "name": c.alias,
            "title": f"{c.alias} ({c.type})",
            "description": c.description or f"a {c.type} credential",
            "mimeType": MIME_TYPE,
        }
        for c in infos
    ]


def read_resource(v: Vultrino, agent: str | None, uri: Any) -> dict[str, Any]:
    """The ``resources/read`` result for ``uri``: the credential's metadata as JSON text. A
    credential the caller may not see is exactly as missing as one that does not exist."""
    if not isinstance(uri, str):
        raise RpcError(INVALID_PARAMS, "resources/read needs params.uri, a string")
    if not uri.startswith(URI_PREFIX) or len(uri) == len(URI_PREFIX):
        raise RpcError(
            RESOURCE_NOT_FOUND,
            f"Resource not found: {uri!r}; Vultrino's resources are {URI_PREFIX}ALIAS "
            "(resources/list shows them)",
            {"uri": uri},
        )
    alias = unquote(uri[len(URI_PREFIX) :])
    try:
        info = _calls(v, agent).credential_info(alias)
    except CredentialNotFoundError:  # CredentialDeniedError too: the same words
        raise RpcError(
            RESOURCE_NOT_FOUND,
            f"Resource not found: {uri!r} (resources/list shows the credentials you can see)",
            {"uri": uri},
        ) from None
    except VultrinoError as exc:
        raise RpcError(INVALID_REQUEST, str(exc)) from None
    return {
        "contents": [
            {"uri": uri, "mimeType": MIME_TYPE, "text": json.dumps(info.to_dict(), indent=2)}
        ]
    }
