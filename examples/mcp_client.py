#!/usr/bin/env python3
"""Check an MCP client configuration the way a client would use it: start (stdio) or reach
(HTTP) the server an entry describes, with the official MCP SDK's client, list its tools and
call ``list_credentials``.

    python examples/mcp_client.py examples/mcp/claude-desktop.json
    python examples/mcp_client.py examples/mcp/vscode.json vultrino-server

The configurations in examples/mcp/ are the forms Claude Desktop, Claude Code, Cursor and VS
Code read. Their variables are filled in as those clients do: ``${userHome}`` (your home),
``${env:NAME}`` and ``${NAME}`` (the environment), ``${input:ID}`` (VS Code's prompt: here the
variable MCP_INPUT_<ID>, e.g. MCP_INPUT_VULTRINO_API_KEY, else a hidden prompt).
Needs the ``mcp`` package (a dependency of vultrino).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def expand(value: str) -> str:
    """``value`` with the clients' ``${...}`` variables replaced."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "userHome":
            return str(Path.home())
        if name.startswith("input:"):
            ident = name.removeprefix("input:")
            env = "MCP_INPUT_" + re.sub(r"[^A-Za-z0-9]", "_", ident).upper()
            return os.environ.get(env) or getpass.getpass(f"{ident}: ")
        var = name.removeprefix("env:").split(":-", 1)
        if var[0] in os.environ:
            return os.environ[var[0]]
        if len(var) == 2:
            return var[1]
        raise SystemExit(f"error: the configuration needs ${{{name}}}: set {var[0]}")

    return _VARIABLE.sub(one, value)


def expand_all(value: Any) -> Any:
    if isinstance(value, str):
        return expand(value)
    if isinstance(value, list):
        return [expand_all(v) for v in value]
    if isinstance(value, dict):
        return {k: expand_all(v) for k, v in value.items()}
    return value


def entry(config: dict[str, Any], name: str | None) -> tuple[str, dict[str, Any]]:
    """The server entry ``name`` (default: the first) of a ``mcpServers`` or ``servers`` map."""
    servers = config.get("mcpServers") or config.get("servers") or {}
    if not servers:
        raise SystemExit("error: no mcpServers or servers map in the configuration")
    name = name or next(iter(servers))
    if name not in servers:
        raise SystemExit(f"error: no server {name!r}; there are: {', '.join(servers)}")
    return name, expand_all(servers[name])


async def check(server: dict[str, Any]) -> None:
    async def use(session: ClientSession) -> None:
        init = await session.initialize()
        print(f"server: {init.server_info.name} {init.server_info.version}")
        tools = await session.list_tools()
        print("tools:", ", ".join(sorted(t.name for t in tools.tools)))
        listed = await session.call_tool("list_credentials", {})
        text = "".join(getattr(c, "text", "") for c in listed.content)
        print("list_credentials:", text)

    if "command" in server:
        params = StdioServerParameters(
            command=server["command"],
            args=server.get("args", []),
            env={**os.environ, **server.get("env", {})},
        )
        async with (
            stdio_client(params) as (read, write),
            ClientSession(read, write) as session,
        ):
            await use(session)
    else:
        async with (
            httpx.AsyncClient(headers=server.get("headers", {}), timeout=60) as client,
            streamable_http_client(server["url"], http_client=client) as (read, write),
            ClientSession(read, write) as session,
        ):
            await use(session)


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    config = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    name, server = entry(config, argv[1] if len(argv) == 2 else None)
    print(f"{argv[0]}: {name}")
    try:
        asyncio.run(check(server))
    except Exception as exc:  # the SDK raises task-group errors: show the innermost one
        while getattr(exc, "exceptions", None):
            exc = exc.exceptions[0]  # type: ignore[attr-defined]
        print(f"error: {name}: {exc}", file=sys.stderr)
        if "command" in server:
            print("the server's own message, if any, is above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
