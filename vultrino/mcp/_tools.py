"""The facade's tools over MCP, whatever the transport (stdlib only): one place for what
``tools/list`` and ``tools/call`` do.

:class:`ToolDesk` holds the last good tool list, refreshes it, lists the tools a caller may see
and runs a call through the facade — and so through ``Pipeline.call``, the one policy gate,
which validates the arguments, decides, scrubs and audits. It adds nothing a call could go
around: the stdio server (``vultrino.mcp._session``) and the SDK server core
(``vultrino.mcp.server``) both call it from worker threads.

Contract (docs/mcp.md):

- ``tools/list`` is re-read on every call; when the list cannot be read at all the request
  fails with -32603, else the last good list stays in force.
- An unknown tool name in ``tools/call`` is a JSON-RPC error (-32602), after one more look in
  case it was installed a moment ago; a tool hidden from an agent fails exactly the same way
  (the pipeline refuses and audits it). Every other failure of a call is a tool result with
  ``isError: true`` (``vultrino.mcp._shapes``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

from vultrino.core import Vultrino
from vultrino.errors import ToolNotFoundError, VultrinoError
from vultrino.info import CREDENTIAL_TOOLS, ToolInfo
from vultrino.mcp._shapes import error_result, internal_error_result, tool_entry, tool_result
from vultrino.policy.approval import Approver

__all__ = [
    "ACTION_THREADS",
    "APPROVAL_SCHEMA",
    "APPROVAL_TIMEOUT_S",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "POLL_INTERVAL_S",
    "RpcError",
    "ToolDesk",
    "original_tool_name",
    "unknown_tool",
]

logger = logging.getLogger("vultrino.mcp")

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

POLL_INTERVAL_S: Final = 0.5
"""How often a server asks the facade whether plugins or credentials changed."""

#: Worker threads for the tools that run a plugin action: a pool of their own, apart from the
#: one list_credentials, tools/list and refreshes use. Slow plugin calls (each plugin also
#: bounds the calls waiting for it: PluginBusyError) therefore never keep those from answering.
ACTION_THREADS: Final = 32

APPROVAL_TIMEOUT_S: Final = 600.0
"""How long an approval prompt waits for the person before counting as declined."""

APPROVAL_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "approve": {
            "type": "boolean",
            "title": "Approve",
            "description": "Allow this one call",
            "default": False,
        }
    },
    "required": ["approve"],
}
"""The form an approval asks the person to fill in (``elicitation/create``)."""


class RpcError(Exception):
    """A JSON-RPC error answer: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def error(self) -> dict[str, Any]:
        """The ``error`` member of the response."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


def unknown_tool(name: str) -> RpcError:
    return RpcError(
        INVALID_PARAMS, f"Unknown tool: {name!r}. Call tools/list to see the available tools."
    )


def original_tool_name(tool: ToolInfo) -> str | None:
    """The name the original Vultrino gives a plugin's tool: ``<plugin>_<tool>``, the plugin's
    dashes as underscores (``pgp-signing``'s ``pgp_sign`` is ``pgp_signing_pgp_sign``); None
    for the server's own tools."""
    if tool.name in CREDENTIAL_TOOLS:
        return None
    return f"{tool.plugin.replace('-', '_')}_{tool.name}"


class ToolDesk:
    """The tools of one :class:`Vultrino` as MCP data; safe to call from any thread."""

    def __init__(self, v: Vultrino) -> None:
        self.v = v
        self._tools: dict[str, ToolInfo] = {}
        self._aliases: dict[str, str] = {}
        self._last_refresh_error = ""
        self._refreshing = threading.Lock()

    def known(self, name: str) -> bool:
        return name in self._tools or name in self._aliases

    def resolve(self, name: str) -> str:
        """The tool ``name`` calls: itself, or the tool whose original-Vultrino name it is
        (:func:`original_tool_name`; a real tool's name always wins)."""
        if name in self._tools:
            return name
        return self._aliases.get(name, name)

    @staticmethod
    def runs_an_action(name: str) -> bool:
        """Whether a call to ``name`` runs a plugin action (may be slow: its own thread pool)
        rather than only reading the store (``list_credentials``, ``get_credential_info``)."""
        return name not in CREDENTIAL_TOOLS

    def refresh(self) -> bool:
        """Re-read plugins and credentials; True when the tool list changed.

        A failure (a store being rewritten, a broken plugin directory) is logged once and the
        last good tool list stays in force; the next refresh tries again.
        """
        with self._refreshing:
            try:
                changed = self.v.refresh()
                tools = {t.name: t for t in self.v.tools()}
            except VultrinoError as exc:
                self._refresh_failed(str(exc))
                return False
            except Exception as exc:
                self._refresh_failed(f"internal error ({type(exc).__name__})")
                logger.debug("refresh failed", exc_info=True)
                return False
            aliases: dict[str, str] = {}
            for tool in tools.values():
                original = original_tool_name(tool)
                if original is not None and original not in tools:
                    aliases[original] = tool.name
            self._tools = tools
            self._aliases = aliases
            self._last_refresh_error = ""
            return changed

    def _refresh_failed(self, message: str) -> None:
        if message != self._last_refresh_error:
            logger.warning("cannot refresh the tool list: %s", message)
            self._last_refresh_error = message

    def list_tools(self, agent: str | None, protocol_version: str) -> list[dict[str, Any]]:
        """The ``tools`` of a ``tools/list`` answer (call :meth:`refresh` first)."""
        if not self._tools and self._last_refresh_error:
            raise RpcError(
                INTERNAL_ERROR, f"Vultrino cannot list its tools: {self._last_refresh_error}"
            )
        tools = list(self._tools.values())
        if agent is not None:
            try:
                tools = self.v.as_agent(agent).tools()
            except VultrinoError as exc:
                raise RpcError(INVALID_REQUEST, str(exc)) from None
        return [tool_entry(t, protocol_version) for t in tools]

    def call(
        self,
        name: str,
        arguments: Mapping[str, Any],
        *,
        agent: str | None,
        approver: Approver | None,
        protocol_version: str,
    ) -> dict[str, Any]:
        """The ``tools/call`` result of one call, run through the pipeline.

        The caller has made sure the tool is :meth:`known` (or that ``agent`` is set: then the
        pipeline refuses an unknown tool and records the refusal); :class:`RpcError` -32602 for
        a tool that does not exist for this caller. The original Vultrino's name of a tool
        calls that tool (:meth:`resolve`).
        """
        called, name = name, self.resolve(name)
        try:
            if agent is not None:
                value = self.v.as_agent(agent, approver=approver).call_tool(
                    name, arguments, source="mcp"
                )
            else:
                value = self.v.call_tool(name, arguments, source="mcp")
        except ToolNotFoundError:
            # outside the agent's profile (the pipeline audited it): exactly as for a tool
            # that does not exist
            raise unknown_tool(called) from None
        except VultrinoError as exc:
            return error_result(exc)
        except Exception as exc:
            result, log = internal_error_result(name, exc)
            logger.error("%s", log)
            return result
        return tool_result(value, protocol_version)
