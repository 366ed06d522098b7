"""`vultrino mcp`: serve the tools to AI agents over stdio or streamable HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vultrino.cli._common import HomeOpt, emit_json, err, handle_errors, home_arg

app = typer.Typer(invoke_without_command=True)


@app.callback()
@handle_errors(json_flag=None)
def mcp_serve(
    ctx: typer.Context,
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP on 127.0.0.1.")
    ] = False,
    port: Annotated[
        int | None, typer.Option("--port", help="HTTP port (default 8765; 0 picks a free one).")
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option("--agent", help="Serve only what this agent profile allows."),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Serve MCP over stdio (default) or streamable HTTP.

    The store is unlocked once at start from VULTRINO_PASSWORD or VULTRINO_PASSWORD_FILE (stdin
    is the protocol, so there is no prompt).

    Examples:

      VULTRINO_PASSWORD_FILE=~/.vultrino-pass vultrino mcp

      vultrino mcp --http --port 8765

      vultrino mcp --agent ci-bot      (only what the ci-bot profile allows)

    Over HTTP, each agent's own token (from `vultrino agent add`) also works and selects its
    profile; with --agent only that agent's token is accepted.
    """
    if ctx.invoked_subcommand is not None:
        return
    from vultrino.core import Vultrino
    from vultrino.mcp import stdio

    # stdio serves its usual clients without the SDK; HTTP needs it: about a second of CPU,
    # overlapping the unlock
    loading = stdio.preload_sdk() if http else None
    v = Vultrino.open(home_arg(home))  # no prompt: stdin belongs to the protocol
    try:
        if loading is None:
            stdio.serve_stdio(v, agent=agent)
            return
        v.unlock()
        loading.join()
        from vultrino.mcp.http import TOKEN_FILE, ensure_http_token, serve_http

        if agent is not None:
            v.agent_profile(agent)  # an unknown agent fails before anything is served
        token, created = ensure_http_token(v.home.root)
        if created and agent is None:
            # where it is kept, never the token itself: stderr ends up in service logs
            err(
                f"generated an HTTP bearer token, kept in {v.home.root / TOKEN_FILE} (0600); "
                "`vultrino mcp config --http` prints a client configuration with it"
            )
        serve_http(v, port=v.config.mcp_port if port is None else port, token=token, agent=agent)
    finally:
        v.close()


@app.command("config")
@handle_errors(json_flag=None)
def mcp_config(
    form: Annotated[
        str,
        typer.Option(
            "--form",
            help="claude (Claude Desktop/Code's mcpServers), vscode (VS Code's servers) or "
            "generic.",
        ),
    ] = "claude",
    http: Annotated[
        bool, typer.Option("--http", help="Point the client at `vultrino mcp --http`.")
    ] = False,
    port: Annotated[int | None, typer.Option("--port", help="The HTTP port.")] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Configure the client as this agent profile.")
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            help="The 0600 file the server reads the store password from (default: "
            "$VULTRINO_PASSWORD_FILE, else ~/.config/vultrino/password).",
        ),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Print a ready-to-paste MCP client configuration (Claude, VS Code or generic JSON).

    A stdio entry names the password file the server reads the store password from; it must
    exist with mode 0600 (else nothing is printed and the error says how to create it), and
    belongs outside the Vultrino home.

    With --http the entry carries the server's bearer token, read from the home's 0600
    mcp-token file (created now if `vultrino mcp --http` has not made one yet). With --agent
    the server is started as that agent profile; over HTTP the entry names the agent's token,
    which only `vultrino agent add` printed.

    Examples:

      vultrino mcp config --form vscode

      vultrino mcp config --http --port 8765

      vultrino mcp config --form generic --agent ci-bot
    """
    from vultrino.config import load_config
    from vultrino.errors import ConfigError
    from vultrino.mcp.clients import (
        CLIENT_FORMS,
        check_password_file,
        client_config,
        client_config_note,
    )
    from vultrino.mcp.clients import password_file as pick_password_file
    from vultrino.mcp.http import TOKEN_FILE, ensure_http_token
    from vultrino.paths import resolve_home

    if form not in CLIENT_FORMS:
        raise ConfigError(f"--form must be one of {', '.join(CLIENT_FORMS)}, not {form!r}")
    h = resolve_home(home_arg(home))
    token: str | None = None
    http_port: int | None = None
    if http:
        http_port = port or load_config(h.config, required=h.config_file is not None).mcp_port
    if http and agent is None:
        token, created = ensure_http_token(h.root)
        made = "generated" if created else "read"
        err(
            f"{made} the HTTP bearer token in {h.root / TOKEN_FILE}; the configuration "
            "below holds it, so keep the file you paste it into private"
        )
    pw = pick_password_file(password_file)
    if not http:  # the server this entry starts reads the file; one that would fail is refused
        for warning in check_password_file(pw, h.root):
            err(f"warning: {warning}")
    cfg = client_config(
        h.root, form=form, http_port=http_port, token=token, agent=agent, password=pw
    )
    emit_json(cfg)
    err(client_config_note(h.root, pw))
