"""How Vultrino's tools, results and errors look over MCP, as plain JSON data (stdlib only).

The one place for these shapes: the stdio server (``vultrino.mcp._session``) writes them as
they are, and the SDK server core (``vultrino.mcp.server``) validates them into the SDK's models
for the transports the SDK serves. tests/unit/test_mcp_front.py compares both on the wire.

- :func:`tool_entry`: one ``tools/list`` entry (name, description, schemas, behaviour hints).
- :func:`tool_result`: a string is text content; a map becomes ``structuredContent`` plus its
  JSON as text; a list likewise (wrapped as ``{"result": [...]}`` on handshake-era versions,
  whose ``structuredContent`` must be an object); any other value is its JSON as text.
- :func:`error_result`: ``isError: true`` with the error's message (never a secret) and its
  ``hint`` (``vultrino.errors``), so the model can fix its call.
"""

from __future__ import annotations

import json
import traceback
from typing import Any, Final

from vultrino._json import jsonable
from vultrino.errors import VultrinoError
from vultrino.info import ToolInfo
from vultrino.mcp._identity import MODERN_VERSIONS

__all__ = [
    "HINTS",
    "error_result",
    "internal_error_result",
    "output_schema",
    "tool_entry",
    "tool_result",
]

HINTS: Final = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
"""The MCP behaviour hints a tool may declare (``ToolInfo.annotations`` keys)."""


def output_schema(schema: dict[str, Any] | None, protocol_version: str) -> dict[str, Any] | None:
    """The ``outputSchema`` a tool advertises on this protocol version.

    Handshake-era versions require an object at the root, and :func:`tool_result` wraps a list
    result as ``{"result": [...]}`` there, so a non-object schema is wrapped the same way.
    """
    if schema is None or protocol_version in MODERN_VERSIONS or schema.get("type") == "object":
        return schema
    return {
        "type": "object",
        "properties": {"result": schema},
        "required": ["result"],
        "additionalProperties": False,
    }


def tool_entry(tool: ToolInfo, protocol_version: str) -> dict[str, Any]:
    """One ``tools/list`` entry: schemas, and the behaviour hints when the tool declares any."""
    entry: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "inputSchema": tool.input_schema,
    }
    schema = output_schema(tool.output_schema, protocol_version)
    if schema is not None:
        entry["outputSchema"] = schema
    if tool.annotations:
        entry["annotations"] = {
            k: tool.annotations[k] for k in HINTS if tool.annotations.get(k) is not None
        }
    return entry


def tool_result(value: Any, protocol_version: str) -> dict[str, Any]:
    """The ``tools/call`` result for a facade result (see the module docstring)."""
    if isinstance(value, str):
        return {"content": [{"type": "text", "text": value}], "isError": False}
    data = jsonable(value)
    result: dict[str, Any] = {
        "content": [{"type": "text", "text": json.dumps(data, ensure_ascii=False)}],
        "isError": False,
    }
    if isinstance(data, dict):
        result["structuredContent"] = data
    elif isinstance(data, list):
        result["structuredContent"] = (
            data if protocol_version in MODERN_VERSIONS else {"result": data}
        )
    return result


def error_result(exc: VultrinoError) -> dict[str, Any]:
    """An ``isError`` result carrying the error's message (never a secret) and its hint."""
    hint = exc.hint
    message = str(exc).strip() or type(exc).__name__
    if hint and not message.endswith((".", "!", "?")):
        message += "."
    text = f"{message} {hint}" if hint else message
    return {"content": [{"type": "text", "text": text}], "isError": True}


def internal_error_result(tool: str, exc: BaseException) -> tuple[dict[str, Any], str]:
    """The ``isError`` result for a bug (not the model's fault), and the line to log.

    The log names where it happened but not the message, which could quote a value; the model
    gets a generic error.
    """
    log = f"internal error in tool {tool}: {type(exc).__name__}\n" + "".join(
        traceback.format_tb(exc.__traceback__)
    )
    text = (
        f"Vultrino hit an internal error ({type(exc).__name__}) running {tool}; tell the user "
        "to check the server log."
    )
    return {"content": [{"type": "text", "text": text}], "isError": True}, log
