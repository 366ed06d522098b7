"""The baseline of the MCP benchmark: the official SDK's low-level server with one trivial
tool and nothing else, so `tools/call` over stdio measures the SDK alone."""

import anyio
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server


async def list_tools(ctx: object, params: object) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[types.Tool(name="ping", input_schema={"type": "object"})])


async def call_tool(ctx: object, params: object) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text="[]")])


server = Server("bare", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


anyio.run(main)
