"""`vultrino agent add|list|info|remove` (agent profiles) and `vultrino audit [verify]`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vultrino._fs import atomic_write
from vultrino.cli._common import (
    HomeOpt,
    JsonOpt,
    confirm_or_yes,
    emit_json,
    err,
    handle_errors,
    open_vultrino,
    table,
)
from vultrino.errors import AgentValidationError, ParameterError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vultrino.policy import AgentInfo

app = typer.Typer(no_args_is_help=True, help="Agent profiles: what each agent may see and do.")


def _write_token_file(path: Path, token: str) -> None:
    """Write the token to a new file only its owner can read (an existing file is refused)."""
    try:
        atomic_write(path, (token + "\n").encode(), mode=0o600, exclusive=True)
    except FileExistsError:
        raise AgentValidationError(
            f"--token-file {path} already exists; name a new file (the token is written once)"
        ) from None
    except OSError as exc:
        raise AgentValidationError(
            f"--token-file {path}: cannot create it ({exc.strerror})"
        ) from exc


def _show(info: AgentInfo) -> None:
    typer.echo(f"name:        {info.name}")
    typer.echo(f"description: {info.description}")
    typer.echo(f"credentials: {', '.join(info.credentials) or '(none)'}")
    typer.echo(f"tools:       {', '.join(info.tools) or '(none; list_credentials only)'}")
    typer.echo(f"actions:     {', '.join(info.actions) or '(none)'}")
    typer.echo(f"allow:       {', '.join(info.allow) or '(no narrowing)'}")
    typer.echo(f"approve:     {', '.join(info.approve) or '(none)'}")
    typer.echo(f"rate:        {info.rate or '(unlimited)'}")
    typer.echo(f"created:     {info.created_at}")
    typer.echo(f"updated:     {info.updated_at}")


@app.command("add")
@handle_errors()
def agent_add(
    name: Annotated[str, typer.Argument(help="The agent's name (lowercase, digits, - and _).")],
    credential: Annotated[
        list[str] | None,
        typer.Option("--credential", "-c", help="Glob of credential aliases it may use."),
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
        str | None, typer.Option("--rate", help="Rate limit N/UNIT, e.g. 60/min (per process).")
    ] = None,
    description: Annotated[str, typer.Option("--description", "-d", help="A note.")] = "",
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="Write the HTTP token to this new 0600 file instead."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing profile (issues a new token).")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Refuse --credential and --tool globs that match nothing yet."
        ),
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add an agent profile and print its HTTP bearer token once.

    Nothing is granted unless named: give --credential and --tool globs.

    Example: vultrino agent add ci-bot --credential 'github*' --tool http_request --rate 60/min
    """
    if token_file is not None and os.path.lexists(token_file):
        raise AgentValidationError(
            f"--token-file {token_file} already exists; name a new file (the token is written once)"
        )
    with open_vultrino(home) as v:
        if strict:  # before anything is stored: a typo in a glob grants nothing, silently
            missing = _unmatched(tuple(credential or ()), [c.alias for c in v.credentials()])
            missing += _unmatched(tuple(tool or ()), [t.name for t in v.tools()])
            if missing:
                raise AgentValidationError(
                    f"--strict: {', '.join(repr(g) for g in missing)} match nothing; check the "
                    "spelling (`vultrino list`, `vultrino plugin info NAME`), or leave out "
                    "--strict to add the profile for names that do not exist yet"
                )
        info, token = v.add_agent(
            name,
            credentials=credential or [],
            tools=tool or [],
            actions=action,
            allow=allow or [],
            approve=approve or [],
            rate=rate,
            description=description,
            replace=force,
        )
        if token_file is not None:
            try:
                _write_token_file(token_file, token)
            except AgentValidationError:
                if not force:
                    v.remove_agent(name)  # a profile whose token nobody has is useless
                raise
        scope = v.as_agent(name)
        unmatched = _unmatched(info.credentials, [c.alias for c in scope.credentials()])
        unmatched += _unmatched(info.tools, [t.name for t in scope.tools()])
    for glob in unmatched:
        err(f"note: {glob!r} matches nothing yet (it will once a matching one exists)")
    if json_out:
        out = info.to_dict()
        out["token"] = None if token_file is not None else token
        out["token_file"] = str(token_file) if token_file is not None else None
        emit_json(out)
        return
    err(f"{'replaced' if force else 'added'} agent {info.name}")
    if token_file is not None:
        err(f"its HTTP bearer token is in {token_file} (mode 0600)")
    else:
        err("its HTTP bearer token (shown only now; `--force` issues a new one):")
        typer.echo(token)


def _unmatched(globs: tuple[str, ...], names: list[str]) -> list[str]:
    import fnmatch

    return [g for g in globs if not any(fnmatch.fnmatchcase(n, g) for n in names)]


@app.command("list")
@handle_errors()
def agent_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """List agent profiles.

    Example: vultrino agent list --json
    """
    with open_vultrino(home) as v:
        infos = v.agents()
    if json_out:
        emit_json([i.to_dict() for i in infos])
        return
    if not infos:
        err("no agents yet: add one with `vultrino agent add NAME --credential GLOB --tool GLOB`")
        return
    table(
        [
            (i.name, ",".join(i.credentials), ",".join(i.tools), i.rate or "-", i.description)
            for i in infos
        ],
        ("name", "credentials", "tools", "rate", "description"),
    )


@app.command("info")
@handle_errors()
def agent_info(
    name: Annotated[str, typer.Argument(help="The agent's name.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show an agent profile (never its token).

    Example: vultrino agent info ci-bot
    """
    with open_vultrino(home) as v:
        info = v.agent_info(name)
    if json_out:
        emit_json(info.to_dict())
    else:
        _show(info)


@app.command("remove")
@handle_errors()
def agent_remove(
    name: Annotated[str, typer.Argument(help="The agent's name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove an agent profile; its token stops working at once.

    Example: vultrino agent remove ci-bot --yes
    """
    with open_vultrino(home) as v:
        v.agent_info(name)  # fail before asking when it does not exist
        confirm_or_yes(f"Remove agent {name!r}?", yes)
        info = v.remove_agent(name)
    if json_out:
        emit_json({"removed": info.name})
    else:
        err(f"removed agent {info.name}")


#: The exit code of `vultrino audit verify` for a log that fails the check (docs/cli.md).
AUDIT_BROKEN_EXIT = 10


@handle_errors()
def audit_show(
    ctx: typer.Context,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only this agent ('-': calls with no agent).")
    ] = None,
    alias: Annotated[str | None, typer.Option("--alias", help="Only this credential.")] = None,
    outcome: Annotated[str | None, typer.Option("--outcome", help="ok, error or denied.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="1h, 30m, 2d, or an ISO-8601 time.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="Only the newest N.")] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep printing matching records as they are written (Ctrl-C stops); with "
            "--json, one JSON object per line.",
        ),
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the audit log (one record per action), oldest first.

    Reading it needs no password: it never holds a secret. `vultrino audit verify` checks
    that no record was edited, removed, reordered or cut off.

    Example: vultrino audit --agent ci-bot --outcome denied --since 1h
    """
    if ctx.invoked_subcommand is not None:
        return
    from vultrino import audit as audit_log
    from vultrino.cli._common import home_arg, remote
    from vultrino.config import load_config
    from vultrino.paths import resolve_home

    where = remote()
    if where is not None:
        if follow:
            raise ParameterError(
                "--follow reads this machine's audit log as it grows; with --remote, run "
                "`vultrino audit` again (or --follow on the server's host)"
            )
        from vultrino.cli._remote import Remote

        with Remote(where) as server:
            found = server.audit(
                agent=agent, alias=alias, outcome=outcome, since=since, limit=limit
            )
        _print_audit(found, json_out)
        return

    h = resolve_home(home_arg(home))
    match = audit_log.Filter(agent=agent, alias=alias, outcome=outcome, since=since)
    url = load_config(h.config).store_url
    if url is not None:  # the store is in PostgreSQL: so is the audit log, every replica's
        from vultrino.store import audit_table

        table = audit_table(url)
        try:
            records, last = table.query_from(match, limit)
            if follow:
                _follow(table.follow(match, last), records, json_lines=json_out)
                return
        finally:
            table.close()
        _print_audit(records, json_out)
        return
    records, offset = audit_log.query_from(h.audit_log, match, limit)
    if follow:
        _follow(audit_log.follow(h.audit_log, match, offset), records, json_lines=json_out)
        return
    _print_audit(records, json_out)


def _print_audit(records: list[dict[str, Any]], json_out: bool) -> None:
    if json_out:
        emit_json(records)
        return
    if not records:
        err("no matching audit records")
        return
    table([_audit_row(r) for r in records], _AUDIT_COLUMNS)


_AUDIT_COLUMNS = ("time", "agent", "alias", "action", "outcome", "detail")


def _audit_row(r: dict[str, Any]) -> tuple[str, ...]:
    detail = [str(r.get("error") or r.get("approval") or "")]
    if r.get("method") or r.get("url"):
        detail.append(" ".join(str(r[k]) for k in ("method", "url") if r.get(k)))
    if r.get("tool"):
        detail.append(f"tool {r['tool']}")
    if r.get("subject"):
        detail.append(str(r["subject"]))
    return (
        str(r.get("ts", "")),
        str(r.get("agent") or "-"),
        str(r.get("alias") or "-"),
        ":".join(str(x) for x in (r.get("plugin"), r.get("action")) if x) or "-",
        str(r.get("outcome", "")),
        "  ".join(d for d in detail if d),
    )


def _follow(
    new: Iterator[dict[str, Any]], first: list[dict[str, Any]], *, json_lines: bool
) -> None:
    """Print ``first``, then every record ``new`` yields, one line each, flushed as it comes:
    JSON Lines with ``--json``, else tab-separated columns (a table cannot be aligned ahead)."""
    import json

    def show(r: dict[str, Any]) -> None:
        if json_lines:
            line = json.dumps(r, ensure_ascii=False, separators=(",", ":"))
        else:
            line = "\t".join(_audit_row(r))
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    for r in first:
        show(r)
    for r in new:
        show(r)


@handle_errors()
def audit_verify(
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Also fail on records past the signed head (no writer running)."
        ),
    ] = False,
    check_key: Annotated[
        bool,
        typer.Option(
            "--check-key",
            help="Unlock the store and require the head to be signed by its own key.",
        ),
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify the audit log: its hash chain and its signed head.

    Exits 0 when the log is whole, 10 naming the first broken line otherwise (edited,
    missing, reordered, inserted, truncated, forged). Needs no password unless --check-key.

    Example: vultrino audit verify --strict
    """
    from vultrino.cli._common import remote

    server = remote()
    if server is not None and server.explicit:
        raise ParameterError(
            "`audit verify` checks this machine's audit log; run it on the server's host "
            "(without --remote)"
        )
    with open_vultrino(home) as v:
        verdict = v.audit_verify(strict=strict, check_key=check_key)
    if json_out:
        emit_json(verdict.as_dict())
    elif verdict.ok:
        typer.echo(verdict.message)
    else:
        where = f"line {verdict.line}" if verdict.line is not None else "the signed head"
        err(f"audit log broken at {where} ({verdict.problem}): {verdict.message}")
    if not verdict.ok:
        raise typer.Exit(AUDIT_BROKEN_EXIT)
