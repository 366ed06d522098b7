"""`vultrino store info|migrate`: which backend holds the store, and moving it to another."""

from __future__ import annotations

from typing import Annotated

import typer

from vultrino.cli._common import HomeOpt, JsonOpt, emit_json, err, handle_errors, open_vultrino

app = typer.Typer(
    no_args_is_help=True,
    help="The store's backend: a file in the home, or a PostgreSQL database (docs/scaling.md).",
)


@app.command("info")
@handle_errors()
def store_info(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Which backend holds the store (file or postgresql), where, and what it holds.

    Examples: vultrino store info; VULTRINO_STORE_URL=postgresql://… vultrino store info --json
    """
    with open_vultrino(home, unlock=True) as v:
        info = v.store_info()
    if json_out:
        emit_json(info)
        return
    typer.echo(f"backend:     {info['backend']}")
    typer.echo(f"location:    {info['location']}")
    typer.echo(f"revision:    {info['revision']}")
    typer.echo(f"credentials: {info['credentials']}")
    typer.echo(f"profiles:    {info['profiles']}")
    typer.echo(f"api keys:    {info['api_keys']}")
    shared = (
        "shared by every process on the database" if info["shared_rate_limits"] else ("per process")
    )
    typer.echo(f"rate limits: {shared}")


@app.command("migrate")
@handle_errors()
def store_migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="A postgresql:// URL of an empty database, or the path of a new store file.",
        ),
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Copy the whole store (credentials, kept versions, profiles, roles, API keys, the audit
    signing key) to another backend, sealed with the same password, then check the copy
    record by record. The source is left as it is; point config.toml at the copy after.

    Examples: vultrino store migrate --to postgresql://vultrino@db/vultrino;
    VULTRINO_STORE_URL=postgresql://… vultrino store migrate --to ./credentials.enc
    """
    with open_vultrino(home, unlock=True, use_session=False) as v:
        report = v.migrate_store(to)
    if json_out:
        emit_json(report)
        return
    err(
        f"copied {report['records']} records from {report['from']} to {report['to']} "
        f"({report['backend']}) and checked each one"
    )
    typer.echo(report["to"])
