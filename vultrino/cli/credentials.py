"""Credential commands: init, add, edit, rotate, rollback, versions, list, info, remove, types,
rekey, request."""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vultrino.cli._common import (
    DebugOpt,
    FieldOpt,
    FormatOpt,
    HomeOpt,
    JsonOpt,
    confirm_or_yes,
    emit_field,
    emit_json,
    err,
    handle_errors,
    home_arg,
    is_tty,
    never_sees,
    open_calls,
    open_vultrino,
    prompt_secret,
    read_value,
    split_pair,
    table,
    wants_json,
)
from vultrino.errors import (
    CredentialNotFoundError,
    CredentialValidationError,
    ParameterError,
    PasswordRequiredError,
    VultrinoError,
)
from vultrino.plugins.validation import check_field_names

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vultrino.cli._remote import Calls
    from vultrino.core import Vultrino
    from vultrino.info import CredentialInfo
    from vultrino.plugins.base import CredentialTypeSpec
    from vultrino.store import KdfParams


def _new_password(confirm_label: str = "Repeat password: ") -> str:
    """Ask twice on a terminal; otherwise the env/file sources (never a hang)."""
    from vultrino.core import resolve_password

    if not is_tty():
        return resolve_password(None, None)
    first = prompt_secret("New store password: ")
    if not first:
        raise PasswordRequiredError("the password must not be empty")
    if prompt_secret(confirm_label) != first:
        raise PasswordRequiredError("the passwords did not match; nothing was changed")
    return first


def _kdf(opslimit: int | None, memlimit_mb: int | None) -> KdfParams | None:
    from vultrino.core import kdf_params

    return kdf_params(opslimit, memlimit_mb * 1024 * 1024 if memlimit_mb else None)


OpsOpt = Annotated[
    int | None, typer.Option("--kdf-opslimit", help="Argon2id passes (default: config/built-in).")
]
MemOpt = Annotated[int | None, typer.Option("--kdf-memlimit-mb", help="Argon2id memory in MiB.")]


@handle_errors()
def init(
    home: HomeOpt = None,
    kdf_opslimit: OpsOpt = None,
    kdf_memlimit_mb: MemOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            "-f",
            help="Re-initialise a home that has a store: the old store file is moved, still "
            "sealed, to backups/ in the home, and a new empty one is created (asks first).",
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --force: do not ask (needed without a TTY).")
    ] = False,
) -> None:
    """Create an empty, sealed credential store.

    The password is asked twice on a terminal, or taken from VULTRINO_PASSWORD or
    VULTRINO_PASSWORD_FILE. On a terminal, a password for the web admin UI of
    `vultrino serve` is offered too (Enter skips it). --force replaces an existing store
    (after a confirmation) and keeps the old one in backups/.

    Example: vultrino init
    """
    from vultrino.core import Vultrino
    from vultrino.paths import resolve_home

    where = resolve_home(home_arg(home))
    if force and where.store.exists():
        _confirm_reinit(where.root, where.store, yes)
    password = _new_password()
    kdf = _kdf(kdf_opslimit, kdf_memlimit_mb)
    with Vultrino.init(home_arg(home), password, kdf=kdf, force=force) as v:
        if v.set_aside is not None:
            err(
                f"the old store is kept at {v.set_aside}, sealed under its old password "
                f"(move it back to {v.home.store} to use it again)"
            )
        err(f"created {v.store_info()['location']}")
        if is_tty():  # offered, never required: `vultrino admin set-password` sets it later
            from vultrino.cli.admin import ask_admin_password

            admin = ask_admin_password(optional=True)
            if admin is not None:
                v.set_admin_password(admin)
                err("the web admin password is set")


def _confirm_reinit(root: Path, store: Path, yes: bool) -> None:
    """Say what ``init --force`` replaces and keeps, then ask (default: no). Without a
    terminal, only --yes goes ahead: nothing piped on stdin confirms it."""
    err(
        f"init --force re-initialises {root}:\n"
        f"  replaced: {store.name}, with every credential, agent profile, role, API key and "
        "the web admin password in it;\n"
        f"    the old file is moved, unchanged and still sealed under its old password, to "
        f"{root / 'backups'}/\n"
        "  kept: config.toml, installed plugins, the audit log, caches and plugin logs\n"
        "  ended: the unlock session; a password kept in the OS keyring is no longer used"
    )
    if yes:
        return
    if not is_tty():
        err(
            "error: init --force replaces the store and needs a confirmation, but there is no "
            "terminal to ask on: run it again with --yes (the old store is kept in backups/)"
        )
        raise typer.Exit(2)
    if not typer.confirm("Replace the store with a new, empty one?", default=False, err=True):
        err("aborted: nothing was changed")
        raise typer.Exit(1)


def _field_values(raw_fields: list[str]) -> tuple[dict[str, str], set[str]]:
    """The --field values, and the names of those given as plain text on the command line."""
    values: dict[str, str] = {}
    on_argv: set[str] = set()
    for raw in raw_fields:
        key, value = split_pair(raw, option="--field")
        text = read_value(value, what=f"--field {key}")
        if value.startswith("@") or value == "-":
            text = text[:-1] if text.endswith("\n") and text.count("\n") == 1 else text
        else:
            on_argv.add(key)
        values[key] = text
    return values, on_argv


def _warn_secret_on_argv(spec: CredentialTypeSpec, on_argv: set[str]) -> None:
    """A secret typed into the command line is visible to every local user (``ps``,
    ``/proc/<pid>/cmdline``) while the command runs, and stays in the shell's history."""
    secret = set(getattr(spec, "secret_fields", ()))
    for key in sorted(on_argv & secret):
        err(
            f"warning: the secret field {key!r} was given on the command line, where other "
            "local users can read it (ps) and your shell history keeps it; use "
            f"--field {key}=@FILE, --field {key}=- (stdin) or the hidden prompt instead"
        )


def _askable(spec: CredentialTypeSpec, values: dict[str, Any], all_fields: bool) -> list[Any]:
    """The fields to ask for: those not given that are required without a default, or with
    ``all_fields`` every one not given."""
    missing = [f for f in spec.fields if f.name not in values and f.type != "hidden"]
    return [f for f in missing if all_fields or (f.required and f.default is None)]


def _check_special_fields(
    spec: CredentialTypeSpec, values: dict[str, Any], on_argv: set[str]
) -> None:
    """A ``file`` field takes ``@PATH`` (or ``-``), never a literal value; a required ``hidden``
    field is never asked for, so it must be given with --field."""
    for f in spec.fields:
        if f.type == "file" and f.name in on_argv:
            raise CredentialValidationError(
                f"{f.name} is a file field: give the file to read, --field {f.name}=@PATH "
                f"(or --field {f.name}=- for stdin), not its contents"
            )
        if f.type == "hidden" and f.required and f.default is None and f.name not in values:
            raise CredentialValidationError(
                f"{f.name} is a hidden field, which is never asked for: give it with "
                f"--field {f.name}=VALUE"
            )


def _read_file_field(label: str, raw: str) -> str:
    """The text of the file at ``raw`` (a path typed at a ``file`` field's prompt), at most
    MAX_FILE_FIELD_BYTES, UTF-8."""
    from vultrino.cli._common import read_limited
    from vultrino.plugins.validation import MAX_FILE_FIELD_BYTES

    path = Path(raw.strip()).expanduser()
    try:
        with path.open("rb") as fh:  # bounded: /dev/zero or a pipe says 0 bytes and never ends
            data = read_limited(fh, MAX_FILE_FIELD_BYTES)
        if data is None:
            raise CredentialValidationError(
                f"{label}: {path} holds more than {MAX_FILE_FIELD_BYTES} bytes; a file field "
                f"holds at most {MAX_FILE_FIELD_BYTES} bytes (1 MiB)"
            )
        return data.decode("utf-8")
    except OSError as exc:
        raise CredentialValidationError(
            f"{label}: cannot read {path} ({exc.strerror or exc}); nothing was added"
        ) from None
    except UnicodeDecodeError:
        raise CredentialValidationError(
            f"{label}: {path} is not UTF-8 text; a file field holds text (encode a binary "
            "file first, e.g. `base64 FILE > FILE.b64`)"
        ) from None


def _prompt_missing(
    spec: CredentialTypeSpec,
    values: dict[str, Any],
    *,
    all_fields: bool = False,
    ask: list[Any] | None = None,
) -> bool:
    """Ask for the fields not given on the command line: the required ones, or every one
    with ``all_fields`` (hidden input for secret ones); ``ask`` overrides which. Returns
    whether an optional field went unasked (so an error can suggest --all-fields)."""
    missing = [f for f in spec.fields if f.name not in values and f.type != "hidden"]
    wanted = _askable(spec, values, all_fields) if ask is None else ask
    skipped = len(wanted) < len(missing)
    if not wanted:
        return skipped
    if not is_tty():
        required = [f.name for f in wanted if f.required and f.default is None]
        if required:
            raise CredentialValidationError(
                f"missing required field(s) {', '.join(required)}; there is no terminal to ask "
                "on, so pass them with --field NAME=VALUE (or NAME=@file, NAME=- for stdin)"
            )
        return skipped
    from vultrino.cli._tty import read_field

    for f in wanted:
        label = f.label or f.name
        hint = f" ({f.help_text})" if f.help_text else ""
        optional = not f.required or f.default is not None
        suffix = " [optional]" if optional and f.default is None else ""
        value: Any
        secret = f.secret or f.access == "host"
        if f.type == "file":
            path = typer.prompt(
                f"{label}{hint}{suffix} (path of the file to read)",
                default="",
                show_default=False,
                err=True,
            )
            value = _read_file_field(label, path) if path.strip() else ""
            if got_size := len(value.encode()):
                err(f"{label}: read {got_size} bytes")
        elif f.type in ("text", "password", "textarea") or secret:
            default = "" if f.default is None or secret else str(f.default)
            shown = f" [{default}]" if default else ""
            if f.type == "textarea":
                # Part of the prompt, so it shows only once echo is off (a paste that follows
                # it is never echoed).
                prompt = (
                    f"{label}{hint}{suffix}: enter the value, then a line with a single '.' "
                    "(Enter on the first line leaves it empty; a pasted -----BEGIN ... block "
                    "ends at its -----END line)\n"
                )
            else:
                prompt = f"{label}{hint}{suffix}{shown}: "
            hidden = secret or f.type == "password"
            got = read_field(prompt, hidden=hidden, textarea=f.type == "textarea")
            if got.lines > 1:
                err(f"{label}: {got.summary()}")
            value = got.value if got.value != "" else default
        elif f.type == "select":
            value = typer.prompt(
                f"{label} ({'/'.join(f.options)})", default=f.default or "", err=True
            )
        else:
            value = typer.prompt(
                f"{label}{hint}{suffix}",
                default="" if f.default is None else str(f.default),
                show_default=f.default is not None,
                err=True,
            )
        if value != "" or not optional:
            values[f.name] = value
    return skipped


AllFieldsOpt = Annotated[
    bool,
    typer.Option(
        "--all-fields", help="On a terminal, ask for every field not given, optional ones too."
    ),
]


#: The original Vultrino's type-specific `add` flags and the field each one sets (its
#: --scopes is comma-separated, this oauth2's scope space-separated).
ORIGINAL_ADD_FLAGS: dict[str, str] = {
    "key": "key",
    "header_name": "header",
    "header_prefix": "prefix",
    "username": "username",
    "password": "password",
    "client_id": "client_id",
    "client_secret": "client_secret",
    "token_url": "token_url",
    "scopes": "scope",
    "refresh_token": "refresh_token",
    "private_key": "private_key",
}


def _flag(name: str, what: str) -> Any:
    return typer.Option(
        f"--{name.replace('_', '-')}",
        help=f"{what} (the original Vultrino's flag: --field {ORIGINAL_ADD_FLAGS[name]}=...).",
        show_default=False,
        rich_help_panel="The original Vultrino's flags",
    )


def _original_values(
    given: dict[str, str | None], values: dict[str, str], on_argv: set[str]
) -> None:
    """Fold the original's flags into the --field values, as values typed on the command
    line (so a secret among them gets the same warning)."""
    for flag, value in given.items():
        if value is None:
            continue
        name = ORIGINAL_ADD_FLAGS[flag]
        if name in values:
            raise ParameterError(
                f"--{flag.replace('_', '-')} and --field {name}=... both set {name!r}: give one"
            )
        if flag == "scopes":
            values[name] = " ".join(s.strip() for s in value.split(",") if s.strip())
        else:
            values[name] = value
        on_argv.add(name)
    if given.get("refresh_token") is not None and "grant_type" not in values:
        values["grant_type"] = "refresh_token"


@handle_errors()
def add(
    alias: Annotated[str, typer.Option("--alias", "-a", help="The name agents use for it.")],
    type_: Annotated[
        str,
        typer.Option(
            "--type", "-t", help="api_key, bearer, basic_auth, oauth2 or plugin:<plugin>:<type>"
        ),
    ],
    field: Annotated[
        list[str] | None,
        typer.Option("--field", help="NAME=VALUE, NAME=@file or NAME=- (stdin). Repeatable."),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="Shown to agents.")
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="URL pattern the credential may be sent to. Repeatable."),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Overwrite an existing alias: everything not given again is dropped (and "
            "listed); `vultrino edit` changes part of one instead.",
        ),
    ] = False,
    all_fields: AllFieldsOpt = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    key: Annotated[str | None, _flag("key", "api_key: the key")] = None,
    header_name: Annotated[str | None, _flag("header_name", "api_key: its header")] = None,
    header_prefix: Annotated[
        str | None, _flag("header_prefix", "api_key: text before the key")
    ] = None,
    username: Annotated[str | None, _flag("username", "basic_auth: the user")] = None,
    password: Annotated[str | None, _flag("password", "basic_auth: the password")] = None,
    client_id: Annotated[str | None, _flag("client_id", "oauth2: the client id")] = None,
    client_secret: Annotated[
        str | None, _flag("client_secret", "oauth2: the client secret")
    ] = None,
    token_url: Annotated[str | None, _flag("token_url", "oauth2: the token endpoint")] = None,
    scopes: Annotated[str | None, _flag("scopes", "oauth2: comma-separated scopes")] = None,
    refresh_token: Annotated[
        str | None, _flag("refresh_token", "oauth2: a refresh token (sets the refresh grant)")
    ] = None,
    private_key: Annotated[
        str | None, _flag("private_key", "a plugin type's private_key field")
    ] = None,
) -> None:
    """Add a credential. Missing required fields are prompted for (secret ones hidden);
    --all-fields asks for the optional ones too.

    A pasted PEM/PGP block ("-----BEGIN ...") is read up to its "-----END ...-----" line.

    Examples:

      vultrino add --alias my-2fa --type plugin:totp:totp

      vultrino add --alias github --type api_key --field key=@token.txt --allow 'https://api.github.com/*'
    """
    with open_vultrino(home, unlock=True) as v:
        values: dict[str, Any]
        values, on_argv = _field_values(field or [])
        _original_values(
            {
                "key": key,
                "header_name": header_name,
                "header_prefix": header_prefix,
                "username": username,
                "password": password,
                "client_id": client_id,
                "client_secret": client_secret,
                "token_url": token_url,
                "scopes": scopes,
                "refresh_token": refresh_token,
                "private_key": private_key,
            },
            values,
            on_argv,
        )
        _, spec = v.credential_type(type_)
        check_field_names(spec, values)
        _check_special_fields(spec, values, on_argv)
        _warn_secret_on_argv(spec, on_argv)
        never = never_sees(spec)
        if never:
            err(never)
        skipped = _prompt_missing(spec, values, all_fields=all_fields)
        try:
            try:
                info = v.add_credential(
                    alias, type_, values, description, allow or None, replace=replace
                )
            except CredentialValidationError as exc:
                # optional fields the others make necessary (oauth2's client_secret for its
                # default grant): asked for once on a terminal, then the add is tried again
                needed = [f for f in spec.fields if f.name in exc.needs and f.name not in values]
                if not needed or not is_tty():
                    raise
                _prompt_missing(spec, values, ask=needed)
                info = v.add_credential(
                    alias, type_, values, description, allow or None, replace=replace
                )
        except CredentialValidationError as exc:
            if skipped and is_tty():
                exc.args = (
                    f"{exc}\nOptional fields were not asked for: run the command again with "
                    "--all-fields to be asked for each one, or give them with --field.",
                )
            raise
    drops = info.dropped
    if json_out:
        out = info.to_dict()
        if drops is not None:
            out["dropped"] = drops.to_dict()
        emit_json(out)
    if drops is None:
        if not json_out:
            err(f"added {info.alias} ({info.type})")
        return
    if not drops:
        err(f"replaced {info.alias} ({info.type}); nothing of the old one was dropped")
        return
    err(f"replaced {info.alias} ({info.type}), dropping what was not given again:")
    for line in drops.lines():
        err(f"  - {line}")
    err(
        f"To change part of a credential and keep the rest, use `vultrino edit {info.alias}` "
        f"(or `vultrino rotate {info.alias}` for a secret)."
    )


def _changed_json(info: CredentialInfo) -> dict[str, Any]:
    return {**info.to_dict(), "changed": list(info.changed)}


@handle_errors()
def edit(
    alias: Annotated[str, typer.Argument(help="The credential's alias.")],
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            help="NAME=VALUE (or @file, - for stdin) for a non-secret field; NAME= clears an "
            "optional one. Repeatable.",
        ),
    ] = None,
    add_allow: Annotated[
        list[str] | None,
        typer.Option("--add-allow", help="A URL pattern to add to the allowlist. Repeatable."),
    ] = None,
    remove_allow: Annotated[
        list[str] | None,
        typer.Option("--remove-allow", help="A URL pattern to remove. Repeatable."),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="A new description.")
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Change part of a credential and keep everything not named.

    Secret fields change with `vultrino rotate`, which keeps the previous value.

    Examples:

      vultrino edit github --add-allow 'https://uploads.github.com/*'

      vultrino edit webhook --field encoding=base64 -d 'release webhook'
    """
    values, _ = _field_values(field or [])
    with open_vultrino(home) as v, suggesting(v, alias):
        info = v.edit(alias, values, add_allow or (), remove_allow or (), description)
    if json_out:
        emit_json(_changed_json(info))
    elif info.changed:
        err(f"edited {info.alias}: changed {', '.join(info.changed)}")
    else:
        err(f"{info.alias} unchanged: it already holds those values")


@handle_errors()
def rotate(
    alias: Annotated[str, typer.Argument(help="The credential's alias.")],
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            help="NAME=@file or NAME=- (stdin) for a secret field; NAME=VALUE works but "
            "warns. Repeatable. Without any, the secret fields are asked for.",
        ),
    ] = None,
    all_fields: Annotated[
        bool,
        typer.Option(
            "--all-fields",
            help="With no --field, ask for every secret field, optional ones too.",
        ),
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Give a credential's secret fields new values and keep everything else.

    The previous values stay sealed in the store for a while (7 days by default) so that
    `vultrino rollback ALIAS` can restore them.

    Examples:

      vultrino rotate github --field key=@new-token.txt

      vultrino rotate github    (asks for the new key, hidden)
    """
    values, on_argv = _field_values(field or [])
    with open_vultrino(home) as v, suggesting(v, alias):
        _, spec = v.credential_type(v.credential_info(alias).type)
        check_field_names(spec, values)
        _warn_secret_on_argv(spec, on_argv)
        if not values:
            secret = [f for f in spec.fields if f.secret]
            ask = [f for f in secret if all_fields or f.required]
            if not is_tty():
                names = ", ".join(f.name for f in secret) or "none"
                raise CredentialValidationError(
                    f"nothing to rotate: there is no terminal to ask on, so pass the new "
                    f"values with --field NAME=@FILE or NAME=- (secret fields of {spec.name}: "
                    f"{names})"
                )
            _prompt_missing(spec, values, ask=ask)
        info = v.rotate(alias, values)
        days = v.config.keep_versions_days
    if json_out:
        emit_json(_changed_json(info))
        return
    err(
        f"rotated {info.alias}: {', '.join(info.changed)} (now version {info.version}); the "
        f"previous value is kept sealed for {days:g} days: `vultrino rollback {info.alias}` "
        "restores it"
    )


@handle_errors()
def rollback(
    alias: Annotated[str, typer.Argument(help="The credential's alias.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore the secret values a rotation replaced (the newest kept version).

    The values swapped out are kept in turn: running rollback again rolls forward.

    Example: vultrino rollback github --yes
    """
    with open_vultrino(home) as v, suggesting(v, alias):
        found = v.versions(alias)
        if len(found) > 1:  # else rollback() says why there is nothing to restore
            now, to = found[0], found[1]
            confirm_or_yes(
                f"Roll {alias!r} back from version {now.version} to version {to.version} "
                f"(current until {to.retired_at})?",
                yes,
            )
        info = v.rollback(alias)
    if json_out:
        emit_json(_changed_json(info))
        return
    err(
        f"rolled back {info.alias} to version {info.version} ({', '.join(info.changed)}); "
        f"`vultrino rollback {info.alias}` again rolls forward"
    )


@handle_errors()
def versions(
    alias: Annotated[str, typer.Argument(help="The credential's alias.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the versions of a credential's secret fields: the current one and those kept
    for rollback (numbers, times and field names; never a value).

    Example: vultrino versions github
    """
    with open_vultrino(home) as v, suggesting(v, alias):
        found = v.versions(alias)
    if json_out:
        emit_json([x.to_dict() for x in found])
        return
    table(
        [
            (
                str(x.version),
                "current" if x.current else "kept",
                x.since,
                x.retired_at or "",
                x.expires_at or "",
                ", ".join(x.changed),
            )
            for x in found
        ],
        ("version", "state", "since", "retired", "kept until", "changed"),
    )


@handle_errors()
def list_(
    home: HomeOpt = None, json_out: JsonOpt = False, field: FieldOpt = None, fmt: FormatOpt = None
) -> None:
    """List credentials (never their values).

    Examples: vultrino list --json; vultrino list -f json; vultrino list --field 0.alias
    """
    json_out = wants_json(json_out, fmt)
    with open_calls(home) as v:
        infos = v.credentials()
    if field is not None:
        emit_field([i.to_dict() for i in infos], field)
        return
    if json_out:
        emit_json([i.to_dict() for i in infos])
        return
    if not infos:
        err("no credentials yet: add one with `vultrino add --alias NAME --type TYPE`")
        return
    table([(i.alias, i.type, i.description) for i in infos], ("alias", "type", "description"))


@handle_errors()
def info(
    alias: Annotated[str, typer.Argument(help="The credential's alias.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    field: FieldOpt = None,
) -> None:
    """Show a credential's metadata; secret fields are masked.

    Examples: vultrino info github; vultrino info github --field allow.0
    """
    with open_calls(home) as v, suggesting(v, alias):
        i = v.credential_info(alias)
    if field is not None:
        emit_field(i.to_dict(), field)
        return
    if json_out:
        emit_json(i.to_dict())
        return
    typer.echo(f"alias:       {i.alias}")
    typer.echo(f"id:          {i.id}")
    typer.echo(f"type:        {i.type}")
    typer.echo(f"plugin:      {i.plugin or '(not installed)'}")
    typer.echo(f"description: {i.description}")
    typer.echo(f"allow:       {', '.join(i.allow) if i.allow else '(none)'}")
    typer.echo("fields:")
    for k, val in i.fields.items():
        typer.echo(f"  {k}: {val}")
    typer.echo(f"created:     {i.created_at}")
    typer.echo(f"updated:     {i.updated_at}")
    typer.echo(f"version:     {i.version}  (`vultrino versions {i.alias}`)")


@handle_errors()
def remove(
    alias: Annotated[str, typer.Argument(help="The credential's alias.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove a credential.

    Example: vultrino remove github --yes
    """
    with open_vultrino(home) as v, suggesting(v, alias):
        v.credential_info(alias)  # fail before asking when it does not exist
        confirm_or_yes(f"Remove credential {alias!r}?", yes)
        i = v.remove_credential(alias)
    if json_out:
        emit_json({"removed": i.alias})
    else:
        err(f"removed {i.alias}")


@handle_errors()
def types(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """List the credential types you can add, with their fields.

    Example: vultrino types
    """
    with open_vultrino(home) as v:
        found = v.types()
    if json_out:
        emit_json(
            [
                {
                    "type": t.name,
                    "plugin": t.plugin,
                    "display_name": t.spec.display_name,
                    "description": t.spec.description,
                    "fields": [
                        {
                            "name": f.name,
                            "type": f.type,
                            "required": f.required,
                            "secret": f.secret,
                            "access": f.access,
                            "default": f.default,
                            "options": list(f.options),
                        }
                        for f in t.spec.fields
                    ],
                    "never_sees": list(t.spec.host_fields),
                }
                for t in found
            ]
        )
        return
    for t in found:
        typer.echo(f"{t.name}  ({t.plugin}) {t.spec.description}".rstrip())
        for f in t.spec.fields:
            flags = (
                [f.type]
                + (["required"] if f.required else [])
                + (["secret"] if f.secret else [])
                + (["host-only"] if f.access == "host" else [])
            )
            typer.echo(f"    {f.name}: {', '.join(flags)}")
        never = never_sees(t.spec)
        if never:
            typer.echo(f"    {never}")


@handle_errors()
def rekey(
    home: HomeOpt = None,
    kdf_opslimit: OpsOpt = None,
    kdf_memlimit_mb: MemOpt = None,
    new_password_file: Annotated[
        Path | None,
        typer.Option("--new-password-file", help="Read the new password from this file."),
    ] = None,
) -> None:
    """Re-seal the store under a new password and/or KDF parameters, atomically.

    The current password is asked even while the home is unlocked (an unlock session ends
    here, its key no longer fits).

    Example: vultrino rekey --kdf-memlimit-mb 256
    """
    with open_vultrino(home, use_session=False) as v:
        v.unlock()
        if new_password_file is not None:
            new = new_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        elif is_tty():
            new = _new_password()
        else:
            raise PasswordRequiredError(
                "no terminal to ask for the new password: pass --new-password-file PATH"
            )
        v.rekey(new, _kdf(kdf_opslimit, kdf_memlimit_mb))
    err("store re-sealed")


def _params(param: list[str], params_json: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(read_value(params_json, what="--params-json"))
        except json.JSONDecodeError as exc:
            raise ParameterError(f"--params-json is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ParameterError("--params-json must be a JSON object")
        out.update(loaded)
    for raw in param:
        key, value = split_pair(raw, option="--param")
        out[key] = read_value(value, what=f"--param {key}")
    return out


def _http_params(
    url: str, method: str | None, header: list[str], data: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"url": url}
    if method:
        params["method"] = method.upper()
    elif data is not None:
        params["method"] = "POST"
    headers: dict[str, str] = {}
    for h in header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise ParameterError(f"-H expects 'Name: value', got {name!r}")
        headers[name.strip()] = value.strip()
    if headers:
        params["headers"] = headers
    if data is not None:
        params["body"] = read_value(data, what="-d")
    return params


@contextlib.contextmanager
def suggesting(v: Vultrino | Calls, alias: str) -> Iterator[None]:
    """Add "did you mean" to an unknown alias, from the aliases the user has (the user's own
    CLI: an agent's errors never name other aliases)."""
    try:
        yield
    except CredentialNotFoundError as exc:
        import difflib

        try:
            known = [c.alias for c in v.credentials()]
        except VultrinoError:  # a remote key that may not list: the first error stands
            known = []
        close = difflib.get_close_matches(alias, known, n=2)
        if close:
            exc.args = (f"{exc}; did you mean {' or '.join(repr(c) for c in close)}?",)
        raise


def _print_result(result: Any, json_out: bool, raw: bool, field: str | None) -> None:
    if field is not None:
        emit_field(result, field)
    elif json_out:
        emit_json(result)
    elif raw:
        from vultrino._json import jsonable

        text = result if isinstance(result, str) else json.dumps(jsonable(result))
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.flush()
    elif isinstance(result, str):
        typer.echo(result, nl=not result.endswith("\n"))
    else:
        emit_json(result)


def _print_http(
    result: dict[str, Any], json_out: bool, raw: bool, field: str | None, quiet: bool = False
) -> int:
    status = int(result.get("status", 0))
    if field is not None:
        emit_field(result, field)
    elif json_out:
        emit_json(result)
    else:
        if not quiet:
            err(f"HTTP {status}")
        body = result.get("body", "")
        if result.get("body_encoding") == "base64":
            sys.stdout.buffer.write(base64.b64decode(body))
            sys.stdout.flush()
        elif raw:
            sys.stdout.buffer.write(str(body).encode("utf-8"))
            sys.stdout.flush()
        else:
            typer.echo(body, nl=not str(body).endswith("\n"))
    return 0 if status < 400 else 22  # like curl --fail: scripts can tell a 4xx/5xx


@handle_errors()
def request(
    alias: Annotated[
        str | None,
        typer.Argument(
            help="The credential's alias (leave out with --plugin for an action "
            "that needs no credential)."
        ),
    ] = None,
    url: Annotated[str | None, typer.Argument(help="URL, for the built-in HTTP plugin.")] = None,
    action: Annotated[str | None, typer.Option("--action", "-a", help="Plugin action.")] = None,
    plugin: Annotated[
        str | None,
        typer.Option(
            "--plugin", help="The plugin whose action to run (needed when there is no alias)."
        ),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE (repeatable).")
    ] = None,
    params_json: Annotated[
        str | None, typer.Option("--params-json", help="Parameters as a JSON object (or @file).")
    ] = None,
    method: Annotated[str | None, typer.Option("-X", "--method", help="HTTP method.")] = None,
    header: Annotated[
        list[str] | None, typer.Option("-H", "--header", help="'Name: value' (repeatable).")
    ] = None,
    data: Annotated[
        str | None, typer.Option("-d", "--data", help="Request body, @file or - (stdin).")
    ] = None,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw", help="Print exactly the result (a string's text, an HTTP body), nothing added."
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds an HTTP request may take (default 30)."),
    ] = None,
    field: FieldOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No status line on stderr (HTTP 200): the body alone."),
    ] = False,
) -> None:
    """Run a plugin action, or an HTTP request, with a credential.

    A text result is printed as is, with a newline added only when it does not end in one;
    --raw adds nothing at all, so the output is byte for byte the result.

    Examples:

      vultrino request my-2fa --action code

      vultrino request webhook --action sign --param message=@payload.json --raw

      vultrino request --plugin NAME --action ACTION   (an action that needs no credential)

      vultrino request github https://api.github.com/user

      vultrino request deploy-2fa --action code --field code   (one value, for scripts)

      vultrino request --plugin NAME --action ACTION --debug   (a failure's log and traceback)
    """
    if len([o for o in (raw, json_out, field) if o]) > 1:
        raise ParameterError("--raw, --json and --field are different outputs: pick one")
    if timeout is not None and url is None:
        raise ParameterError("--timeout is for HTTP requests (a URL); plugin actions have theirs")
    if alias is None:
        if plugin is None or action is None:
            raise ParameterError(
                "nothing to do: give a credential alias (with --action NAME or a URL), or "
                "--plugin NAME --action NAME for an action that needs no credential"
            )
        with open_calls(home) as v:
            result = v.run_action(
                plugin, action, _params(param or [], params_json), from_cli=True, source="cli"
            )
        _print_result(result, json_out, raw, field)
        return
    if url is not None and action is None:
        if param or params_json:
            raise ParameterError("give either a URL (HTTP request) or --action with --param")
        params = _http_params(url, method, header or [], data)
        if timeout is not None:
            params["timeout"] = timeout
        with open_calls(home) as v, suggesting(v, alias):
            result = v.execute(alias, "request", params, plugin=plugin, source="cli")
        code = _print_http(result, json_out, raw, field, quiet)
        if code:
            raise typer.Exit(code)
        return
    if action is None:
        raise ParameterError(
            "nothing to do: give --action NAME (see `vultrino plugin info PLUGIN`) or a URL"
        )
    if url is not None or method or header or data is not None:
        raise ParameterError(
            "URL, -X, -H and -d belong to HTTP requests; use --param with --action"
        )
    with open_calls(home) as v, suggesting(v, alias):
        result = v.execute(
            alias,
            action,
            _params(param or [], params_json),
            from_cli=True,
            plugin=plugin,
            source="cli",
        )
    _print_result(result, json_out, raw, field)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("add")(add)
    app.command("edit")(edit)
    app.command("rotate")(rotate)
    app.command("rollback")(rollback)
    app.command("versions")(versions)
    app.command("list")(list_)
    app.command("info")(info)
    app.command("remove")(remove)
    app.command("types")(types)
    app.command("rekey")(rekey)
    app.command("request")(request)
    app.command("req", hidden=True, help="The original Vultrino's name of `request`.")(request)
