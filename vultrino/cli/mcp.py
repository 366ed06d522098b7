"""`vultrino mcp`: serve the tools to AI agents over stdio or streamable HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

from vultrino.cli._common import HomeOpt, emit_json, err, handle_errors, home_arg, open_vultrino

app = typer.Typer(invoke_without_command=True)


@app.callback()
@handle_errors(json_flag=None)
def mcp_serve(
    ctx: typer.Context,
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP on 127.0.0.1.")
    ] = False,
    port: Annotated[int | None, typer.Option("--port", help="HTTP port (default 8765).")] = None,
    home: HomeOpt = None,
) -> None:
    """Serve MCP over stdio (default) or streamable HTTP.

    The store is unlocked once at start from VULTRINO_PASSWORD or VULTRINO_PASSWORD_FILE (stdin
    is the protocol, so there is no prompt).

    Examples:

      VULTRINO_PASSWORD_FILE=~/.vultrino-pass vultrino mcp

      vultrino mcp --http --port 8765
    """
    if ctx.invoked_subcommand is not None:
        return
    from vultrino import mcp_server
    from vultrino.core import Vultrino

    v = Vultrino.open(home_arg(home))  # no prompt: stdin belongs to the protocol
    try:
        v.unlock()
        if http:
            token, created = mcp_server.ensure_http_token(v.home.root)
            if created:
                err(f"generated an HTTP bearer token (kept in {v.home.root / 'mcp-token'}):")
                err(token)
            mcp_server.serve_http(v, port=port or v.config.mcp_port, token=token)
        else:
            mcp_server.serve_stdio(v)
    finally:
        v.close()


@app.command("config")
@handle_errors(json_flag=None)
def mcp_config(home: HomeOpt = None) -> None:
    """Print a ready-to-paste MCP client configuration (Claude Desktop and generic JSON).

    Example: vultrino mcp config
    """
    from vultrino import mcp_server

    with open_vultrino(home) as v:
        emit_json(mcp_server.client_config(v.home.root))
    err(
        "The server reads the store password from VULTRINO_PASSWORD_FILE (a file readable only by "
        "you, e.g. chmod 600) or VULTRINO_PASSWORD; never put the password itself in the JSON."
    )
