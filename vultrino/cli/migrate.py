"""``vultrino import --from-rust PATH``: bring the original Vultrino's store into this home."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from vultrino.cli._common import (
    HomeOpt,
    JsonOpt,
    emit_json,
    err,
    handle_errors,
    is_tty,
    open_vultrino,
    prompt_secret,
    table,
)


def _original_password(password_file: Path | None) -> str:
    from vultrino.errors import PasswordRequiredError

    if password_file is not None:
        try:
            text = password_file.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise PasswordRequiredError(
                f"--from-password-file: cannot read {password_file}: {exc.strerror}"
            ) from None
        password = text.rstrip("\r\n")
        if not password:
            raise PasswordRequiredError(f"--from-password-file: {password_file} is empty")
        return password
    if not is_tty():
        raise PasswordRequiredError(
            "the original store's password is needed: run on a terminal to be asked for it, "
            "or pass --from-password-file FILE"
        )
    return prompt_secret("Password of the original Vultrino's store: ")


@handle_errors()
def import_(
    from_rust: Annotated[
        Path,
        typer.Option(
            "--from-rust",
            help="The original (Rust) Vultrino's credentials.enc.",
            show_default=False,
        ),
    ],
    from_password_file: Annotated[
        Path | None,
        typer.Option(
            "--from-password-file",
            help="Read the original store's password from this file (else it is asked for).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be imported; write nothing.")
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import the original Vultrino's credentials, roles and API keys.

    Credentials of its built-in types become api_key, basic_auth or oauth2; plugin credentials
    become plugin:<plugin>:<type> (install the plugin first). Aliases that exist here, and
    what has no counterpart, are skipped with the reason. API keys keep working.

    Example: vultrino import --from-rust ~/.config/vultrino/credentials.enc --dry-run
    """
    if not os.path.exists(from_rust):
        err(f"error: --from-rust: {from_rust} does not exist")
        raise typer.Exit(2)
    with open_vultrino(home, unlock=True) as v:
        password = _original_password(from_password_file)
        report = v.import_rust(from_rust, password, dry_run=dry_run)
    if json_out:
        emit_json(report.to_dict())
        return
    if not report.items:
        err(f"{from_rust} holds no credentials, roles or API keys")
        return
    table(
        [(i.kind, i.name, i.source, i.target, i.status) for i in report.items],
        ("kind", "name", "from", "to", "status"),
    )
    for i in report.items:
        if i.reason:
            err(f"{i.kind} {i.name}: skipped: {i.reason}")
        elif i.note:
            err(f"{i.kind} {i.name}: {i.note}")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.counts().items()))
    err(f"{'dry run: nothing written; ' if dry_run else ''}{counts}")
