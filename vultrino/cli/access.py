"""`vultrino role create|list|info|delete` and `vultrino key create|list|revoke`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from vultrino.cli._common import (
    FormatOpt,
    HomeOpt,
    JsonOpt,
    confirm_or_yes,
    emit_json,
    err,
    handle_errors,
    open_vultrino,
    table,
    wants_json,
)

if TYPE_CHECKING:
    from vultrino.policy import RoleInfo

role_app = typer.Typer(
    no_args_is_help=True, help="Roles: reusable profiles with permission verbs, for API keys."
)
key_app = typer.Typer(no_args_is_help=True, help="API keys for `vultrino serve`'s REST API.")


def _show_role(info: RoleInfo) -> None:
    typer.echo(f"name:        {info.name}{' (built in)' if info.builtin else ''}")
    typer.echo(f"kind:        {info.kind}")
    typer.echo(f"permissions: {', '.join(info.permissions)}")
    typer.echo(f"description: {info.description}")
    typer.echo(f"credentials: {', '.join(info.credentials) or '(none)'}")
    typer.echo(f"tools:       {', '.join(info.tools) or '(none; list_credentials only)'}")
    typer.echo(f"actions:     {', '.join(info.actions) or '(none)'}")
    typer.echo(f"allow:       {', '.join(info.allow) or '(no narrowing)'}")
    typer.echo(f"approve:     {', '.join(info.approve) or '(none)'}")
    typer.echo(f"rate:        {info.rate or '(unlimited)'}")
    if info.created_at:
        typer.echo(f"created:     {info.created_at}")


@role_app.command("create")
@handle_errors()
def role_create(
    name: Annotated[str, typer.Argument(help="The role's name (lowercase, digits, - and _).")],
    permission: Annotated[
        list[str],
        typer.Option(
            "--permission",
            "-p",
            help="read, execute, write or admin (repeat, or comma-separated; admin implies all).",
        ),
    ],
    credential: Annotated[
        list[str] | None,
        typer.Option("--credential", "-c", help="Glob of credential aliases it may see and use."),
    ] = None,
    tool: Annotated[
        list[str] | None, typer.Option("--tool", "-t", help="Glob of MCP tool names it may call.")
    ] = None,
    action: Annotated[
        list[str] | None,
        typer.Option("--action", "-a", help="Glob of ACTION or PLUGIN:ACTION (default: any)."),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="URL pattern narrowing its HTTP requests ('GET https://…')."),
    ] = None,
    approve: Annotated[
        list[str] | None,
        typer.Option("--approve", help="Glob of tools or actions that need a person's approval."),
    ] = None,
    rate: Annotated[
        str | None, typer.Option("--rate", help="Rate limit N/UNIT for all its keys together.")
    ] = None,
    description: Annotated[str, typer.Option("--description", "-d", help="A note.")] = "",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing role.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a role: a profile (globs, URL patterns, rate, approvals) plus permission verbs.

    Nothing is granted unless named: give --credential (and --tool for MCP) globs.

    Example: vultrino role create github-ci -p read,execute -c 'github-*' --tool http_request
    """
    with open_vultrino(home) as v:
        info = v.add_role(
            name,
            permissions=permission,
            credentials=credential or [],
            tools=tool or [],
            actions=action,
            allow=allow or [],
            approve=approve or [],
            rate=rate,
            description=description,
            replace=force,
        )
    if json_out:
        emit_json(info.to_dict())
        return
    err(f"{'replaced' if force else 'created'} role {info.name} ({', '.join(info.permissions)})")


@role_app.command("list")
@handle_errors()
def role_list(home: HomeOpt = None, json_out: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """List the roles: the built-in ones, then yours.

    Example: vultrino role list --json
    """
    json_out = wants_json(json_out, fmt)
    with open_vultrino(home) as v:
        infos = v.roles()
    if json_out:
        emit_json([i.to_dict() for i in infos])
        return
    table(
        [
            (
                i.name,
                ",".join(i.permissions),
                ",".join(i.credentials) or "-",
                "built in" if i.builtin else i.description,
            )
            for i in infos
        ],
        ("name", "permissions", "credentials", "description"),
    )


@role_app.command("info")
@handle_errors()
def role_info(
    name: Annotated[str, typer.Argument(help="The role's (or agent's) name.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a role (an agent profile is shown as the role its keys act as).

    Example: vultrino role info executor
    """
    with open_vultrino(home) as v:
        info = v.role_info(name)
    if json_out:
        emit_json(info.to_dict())
    else:
        _show_role(info)


@role_app.command("delete")
@handle_errors()
def role_delete(
    name: Annotated[str, typer.Argument(help="The role's name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete a role. Built-in roles cannot be deleted, nor a role keys still use.

    Example: vultrino role delete github-ci --yes
    """
    with open_vultrino(home) as v:
        v.role_info(name)  # fail before asking when it does not exist
        confirm_or_yes(f"Delete role {name!r}?", yes)
        info = v.remove_role(name)
    if json_out:
        emit_json({"deleted": info.name})
    else:
        err(f"deleted role {info.name}")


@key_app.command("create")
@handle_errors()
def key_create(
    name: Annotated[str, typer.Argument(help="A name for the key (lowercase, digits, - and _).")],
    role: Annotated[str, typer.Option("--role", "-r", help="The role (or agent) the key acts as.")],
    expires: Annotated[
        str,
        typer.Option(
            "--expires",
            help="never, a span (30d, 12h, 90m, 2w, 1y, 45s) or an ISO-8601 date or time.",
        ),
    ] = "never",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create an API key and print it once (only its SHA-256 is stored).

    Example: vultrino key create ci-deploy --role executor --expires 30d
    """
    with open_vultrino(home) as v:
        info, secret = v.create_key(name, role=role, expires=expires)
    if json_out:
        emit_json({**info.to_dict(), "key": secret})
        return
    err(
        f"created API key {info.name} ({info.prefix}...) acting as {info.role}, "
        f"expires {info.expires_at or 'never'}"
    )
    err("the key (shown only now; send it as `Authorization: Bearer KEY`):")
    typer.echo(secret)


@key_app.command("list")
@handle_errors()
def key_list(home: HomeOpt = None, json_out: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """List API keys: prefix, role, expiry, creation, last use (never the key).

    Example: vultrino key list --json
    """
    json_out = wants_json(json_out, fmt)
    with open_vultrino(home) as v:
        infos = v.keys()
    if json_out:
        emit_json([i.to_dict() for i in infos])
        return
    if not infos:
        err("no API keys yet: create one with `vultrino key create NAME --role ROLE`")
        return
    table(
        [
            (
                i.id,
                i.name,
                f"{i.prefix}...",
                i.role,
                i.expires_at or "never",
                i.created_at,
                i.last_used_at or "-",
            )
            for i in infos
        ],
        ("id", "name", "prefix", "role", "expires", "created", "last used"),
    )


@key_app.command("revoke")
@handle_errors()
def key_revoke(
    ref: Annotated[str, typer.Argument(help="The key's id, prefix (vk_XXXXXXXX) or name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke an API key: a running server refuses it from its next request on.

    Example: vultrino key revoke ci-deploy --yes
    """
    with open_vultrino(home) as v:
        confirm_or_yes(f"Revoke API key {ref!r}?", yes)
        info = v.revoke_key(ref)
    if json_out:
        emit_json({"revoked": info.to_dict()})
    else:
        err(f"revoked API key {info.name} ({info.prefix}...)")
