"""The Typer CLI. Commands are thin: parse, call one facade method, format the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vultrino._version import __version__
from vultrino.cli import agent, credentials, demo, mcp, plugin
from vultrino.cli._common import set_root_home

app = typer.Typer(
    name="vultrino",
    help="A credential proxy for AI agents: agents name a credential, Vultrino uses it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vultrino {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Vultrino home (default: $VULTRINO_HOME or ~/.vultrino)."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Vultrino keeps secrets sealed and performs the actions that need them."""
    set_root_home(home)


credentials.register(app)
app.command("demo")(demo.demo)
app.add_typer(plugin.app, name="plugin")
app.add_typer(mcp.app, name="mcp")
app.add_typer(agent.app, name="agent")
app.command("audit")(agent.audit_show)


def main() -> None:
    app()
