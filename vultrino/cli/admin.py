"""`vultrino admin set-password`: the password of the web admin UI (`vultrino serve`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from vultrino.cli._common import HomeOpt, err, handle_errors, is_tty, open_vultrino, prompt_secret
from vultrino.errors import PasswordRequiredError

app = typer.Typer(no_args_is_help=True, help="The web admin UI of `vultrino serve`.")


def ask_admin_password(*, optional: bool) -> str | None:
    """Ask for a new admin password twice, hidden. ``optional``: Enter at the first prompt
    skips (None)."""
    skip = " (Enter to skip; set it later with `vultrino admin set-password`)" if optional else ""
    first = prompt_secret(f"New web admin password{skip}: ")
    if not first and optional:
        return None
    if not first:
        raise PasswordRequiredError("the admin password must not be empty; nothing was changed")
    if prompt_secret("Repeat web admin password: ") != first:
        raise PasswordRequiredError("the passwords did not match; nothing was changed")
    return first


@app.command("set-password")
@handle_errors(json_flag=None)
def admin_set_password(
    stdin: Annotated[
        bool,
        typer.Option(
            "--stdin", help="Read the password from the first line of stdin (for scripts)."
        ),
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Set (or change) the web admin UI's password: asked twice, hidden, on a terminal.

    It is kept as an Argon2id hash inside the sealed store; a running `vultrino serve` uses
    the new one at the next login.

    Example: vultrino admin set-password
    """
    if stdin:
        password: str | None = sys.stdin.readline().rstrip("\r\n")
    elif is_tty():
        password = ask_admin_password(optional=False)
    else:
        raise PasswordRequiredError(
            "no terminal to ask for the admin password on; pipe it with "
            "`vultrino admin set-password --stdin`"
        )
    assert password is not None
    with open_vultrino(home) as v:
        v.set_admin_password(password)
    err("the web admin password is set; log in at `vultrino serve`'s address")
