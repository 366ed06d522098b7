"""The Typer CLI. Commands are thin: parse, call one facade method, format the result.

Start-up is kept short: the root group knows its commands by name only and builds a command
(importing its module and letting Typer turn its function signatures into options) the first
time the command is looked up. ``vultrino plugin list`` builds the ``plugin`` group alone;
``vultrino --help`` builds them all, to show their one-line help.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from vultrino._version import __version__
from vultrino.cli._common import (
    LOG_ENV,
    err,
    log_level,
    set_remote,
    set_root_home,
    setup_logging,
)
from vultrino.errors import VultrinoError

# The settings of the root app; every lazily built command is built with the same ones.
_APP_SETTINGS: dict[str, Any] = {
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
}


def _typer(**kwargs: Any) -> typer.Typer:
    return typer.Typer(**_APP_SETTINGS, **kwargs)


def _credentials_commands() -> typer.Typer:
    from vultrino.cli import credentials

    app = _typer()
    credentials.register(app)
    return app


def _demo_command() -> typer.Typer:
    from vultrino.cli import demo

    app = _typer()
    app.command("demo")(demo.demo)
    return app


def _session_commands() -> typer.Typer:
    from vultrino.cli import session

    app = _typer()
    app.command("unlock")(session.unlock)
    app.command("lock")(session.lock)
    return app


def _audit_command() -> typer.Typer:
    from vultrino.cli import agent

    app = _typer()
    audit = _typer(invoke_without_command=True)
    audit.callback()(agent.audit_show)
    audit.command("verify")(agent.audit_verify)
    app.add_typer(audit, name="audit")
    return app


def _compat_commands() -> typer.Typer:
    from vultrino.cli import compat

    app = _typer()
    compat.register(app)
    return app


def _gpg_command() -> typer.Typer:
    from vultrino.cli import gpg

    app = _typer()
    app.command("gpg", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        gpg.gpg
    )
    return app


def _import_command() -> typer.Typer:
    from vultrino.cli import migrate

    app = _typer()
    app.command("import")(migrate.import_)
    return app


def _group(module: str, name: str, attr: str = "app") -> Callable[[], typer.Typer]:
    def build() -> typer.Typer:
        import importlib

        app = _typer()
        app.add_typer(getattr(importlib.import_module(f"vultrino.cli.{module}"), attr), name=name)
        return app

    return build


_CREDENTIAL_COMMANDS = (
    "init",
    "add",
    "edit",
    "rotate",
    "rollback",
    "versions",
    "list",
    "info",
    "remove",
    "types",
    "rekey",
    "request",
    "req",
)

#: Every top-level command, in the order ``--help`` lists them, with what builds it (a Typer
#: app registering that command, maybe with its siblings). tests/unit/test_cli_lazy.py checks
#: that this table and what the builders register agree.
COMMANDS: dict[str, Callable[[], typer.Typer]] = {
    **{name: _credentials_commands for name in _CREDENTIAL_COMMANDS},
    "import": _import_command,
    "action": _compat_commands,
    "exec": _compat_commands,
    "unlock": _session_commands,
    "lock": _session_commands,
    "demo": _demo_command,
    "audit": _audit_command,
    "gpg": _gpg_command,
    "plugin": _group("plugin", "plugin"),
    "mcp": _group("mcp", "mcp"),
    "agent": _group("agent", "agent"),
    "role": _group("access", "role", "role_app"),
    "key": _group("access", "key", "key_app"),
    "serve": _group("serve", "serve"),
    "approvals": _group("serve", "approvals", "approvals_app"),
    "admin": _group("admin", "admin"),
    "store": _group("store", "store"),
}


class _LazyCommands(MutableMapping[str, Any]):
    """The root group's commands: every name is known, a command is built on first access."""

    def __init__(self, builders: dict[str, Callable[[], typer.Typer]]) -> None:
        self._builders = dict(builders)
        self._names = list(builders)
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            builder = self._builders.get(name)
            if builder is None:
                raise KeyError(name)
            built = typer.main.get_group(builder()).commands
            for key in self._names:  # siblings built together (the credential commands)
                if key in built and key not in self._built:
                    self._built[key] = built[key]
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._names:
            self._names.append(name)
        self._builders.pop(name, None)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._builders.pop(name, None)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


class _LazyGroup(TyperGroup):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        lazy = _LazyCommands(COMMANDS)
        for name, command in self.commands.items():
            lazy[name] = command
        self.commands = lazy

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)


app = typer.Typer(
    name="vultrino",
    help="A credential proxy for AI agents: agents name a credential, Vultrino uses it.",
    no_args_is_help=True,
    cls=_LazyGroup,
    **{**_APP_SETTINGS, "add_completion": True},  # --install-completion, --show-completion
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vultrino {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Vultrino home (default: $VULTRINO_HOME or ~/.vultrino)."),
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            metavar="URL",
            help="Run list, info, request and audit on a `vultrino serve` at URL over its "
            "REST API (default: $VULTRINO_API_URL).",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="KEY",
            help="The API key for --remote; prefer $VULTRINO_API_KEY (a key on the command "
            "line is visible to other local users).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="PATH",
            help="The config file to use instead of config.toml in the home (the home stays "
            "--home / $VULTRINO_HOME / ~/.vultrino); the same as $VULTRINO_CONFIG.",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="Log what Vultrino does on stderr: -v info, -vv debug (never a secret; "
            "[logging] in config.toml sets a level and format = json).",
            show_default=False,
        ),
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Vultrino keeps secrets sealed and performs the actions that need them."""
    from vultrino.cli import _remote

    if config is not None:
        from vultrino.paths import ENV_CONFIG

        path = config.expanduser().absolute()
        if not path.is_file():
            err(
                f"error: -c/--config {path}: no such file; name an existing config file, or "
                "leave -c out to use config.toml in the home"
            )
            raise typer.Exit(2)
        # through the environment, so every part of this process (and a server or unlock
        # agent it starts) reads the same file
        os.environ[ENV_CONFIG] = str(path)
    set_root_home(home)
    setup_logging(home, verbose)
    if os.environ.get(LOG_ENV):  # checked once, before any command runs
        try:
            log_level()
        except VultrinoError as exc:
            err(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
    if key is not None:
        err(
            "warning: the API key was given on the command line, where other local users can "
            "read it (ps) and your shell history keeps it; set VULTRINO_API_KEY instead"
        )
        if remote is None and _remote.url_from_env() is None:
            err("error: --key is the API key of a server: give --remote URL too")
            raise typer.Exit(2)
    where = _remote.target(remote, key)
    command = ctx.invoked_subcommand
    if where is not None and command not in _remote.REMOTE_COMMANDS:
        if where.explicit and command is not None:
            err(
                f"error: `vultrino {command}` works on this machine's home, not on a server: "
                f"with --remote only {', '.join(_remote.REMOTE_COMMANDS)} talk to the server"
            )
            raise typer.Exit(2)
        where = None  # VULTRINO_API_URL routes only the remote commands
    set_remote(where)


def main() -> None:
    app()
