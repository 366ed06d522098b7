"""`vultrino plugin ...`: list, info, install, remove, reload, new, logs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vultrino.cli._common import (
    HomeOpt,
    JsonOpt,
    confirm_or_yes,
    emit_json,
    err,
    handle_errors,
    is_tty,
    open_vultrino,
    table,
)

app = typer.Typer(help="Install, inspect and remove plugins.", no_args_is_help=True)

if TYPE_CHECKING:
    from vultrino.plugins.base import Plugin


def _metadata(plugin: Plugin) -> dict[str, Any]:
    directory = getattr(plugin, "directory", None)
    if directory is None:
        return {}
    path = Path(directory) / ".installed.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


def _summary(plugin: Plugin) -> dict[str, Any]:
    m = plugin.manifest
    meta = _metadata(plugin)
    return {
        "name": plugin.name,
        "version": m.plugin.version,
        "builtin": plugin.builtin,
        "status": "ok",
        "description": m.plugin.description,
        "abi": meta.get("abi"),
        "credential_types": [t.name for t in m.credential_types],
        "actions": [a.name for a in m.actions],
        "tools": [t.name for t in m.mcp_tools],
        "source": meta.get("source"),
    }


@app.command("list")
@handle_errors()
def plugin_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """List installed plugins, built-in first; broken ones are shown with their reason.

    Example: vultrino plugin list --json
    """
    with open_vultrino(home) as v:
        rows = [_summary(p) for p in v.plugins()]
        rows += [
            {"name": name, "status": "broken", "reason": reason}
            for name, reason in sorted(v.broken_plugins().items())
        ]
    if json_out:
        emit_json(rows)
        return
    table(
        [
            (
                r["name"],
                r.get("version", "-"),
                "built-in" if r.get("builtin") else r["status"],
                ", ".join(r.get("tools", [])) if r["status"] == "ok" else r["reason"],
            )
            for r in rows
        ],
        ("name", "version", "status", "tools / problem"),
    )


@app.command("info")
@handle_errors()
def plugin_info(
    name: Annotated[str, typer.Argument(help="Plugin name.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show everything about a plugin: types and fields, actions and parameters, tools, ABI.

    Example: vultrino plugin info totp
    """
    with open_vultrino(home) as v:
        broken = v.broken_plugins()
        if name in broken:
            if json_out:
                emit_json({"name": name, "status": "broken", "reason": broken[name]})
            else:
                typer.echo(f"{name}: broken: {broken[name]}")
            raise typer.Exit(5)
        p = v.plugin(name)
        m = p.manifest
        data = {
            **_summary(p),
            "author": m.plugin.author,
            "license": m.plugin.license,
            "homepage": m.plugin.homepage,
            "repository": m.plugin.repository,
            "wasm_module": m.plugin.wasm_module,
            "installed": _metadata(p),
            "credential_types": [
                {
                    "name": t.name,
                    "display_name": t.display_name,
                    "description": t.description,
                    "fields": [f.__dict__ | {"options": list(f.options)} for f in t.fields],
                }
                for t in m.credential_types
            ],
            "actions": [
                {
                    "name": a.name,
                    "description": a.description,
                    "credential_type": a.credential_type,
                    "parameters": [
                        q.__dict__ | {"enum_values": list(q.enum_values)} for q in a.parameters
                    ],
                }
                for a in m.actions
            ],
            "tools": [t.__dict__ for t in m.mcp_tools],
            "warnings": list(m.warnings),
        }
    if json_out:
        emit_json(data)
        return
    typer.echo(f"{data['name']} {data['version']}  {data['description']}".rstrip())
    for key in ("author", "license", "homepage", "repository", "wasm_module", "abi", "source"):
        if data.get(key):
            typer.echo(f"  {key}: {data[key]}")
    for t in data["credential_types"]:
        typer.echo(f"credential type {t['name']}: {t['description']}".rstrip(": "))
        for f in t["fields"]:
            flags = [f["type"]] + [k for k in ("required", "secret") if f[k]]
            typer.echo(f"    {f['name']}: {', '.join(flags)}")
    for a in data["actions"]:
        typer.echo(f"action {a['name']}: {a['description']}".rstrip(": "))
        for q in a["parameters"]:
            req = ", required" if q["required"] else ""
            typer.echo(f"    {q['name']}: {q['type']}{req}")
    for t in data["tools"]:
        typer.echo(f"mcp tool {t['name']} -> {t['action']}")
    for w in data["warnings"]:
        err(f"warning: {w}")


@app.command("install")
@handle_errors()
def plugin_install(
    source: Annotated[
        str, typer.Argument(help="Directory, .tar.gz, http(s) URL or git URL[#ref].")
    ],
    subdir: Annotated[
        str | None, typer.Option("--subdir", help="The plugin's folder inside the source.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an installed plugin.")] = False,
    build: Annotated[
        bool,
        typer.Option(
            "--build",
            help="Allow building a source without a prebuilt module (runs its code: cargo "
            "build scripts, or the Python plugin under componentize-py).",
        ),
    ] = False,
    build_sandbox: Annotated[
        str | None,
        typer.Option(
            "--build-sandbox",
            help="auto: build in a bubblewrap sandbox (no network, no home) when it can run, "
            "else warn and build without; require: refuse without it; off: never. "
            "Default: config.toml [build] sandbox, else auto.",
            metavar="auto|require|off",
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Install a plugin: validated in full before anything is written.

    A source without a prebuilt module is built (cargo) only with --build: building runs the
    source's own build scripts, in a sandbox that sees neither your home nor the network.

    Examples:

      vultrino plugin install ./my-plugin

      vultrino plugin install --build ./my-rust-plugin

      vultrino plugin install https://github.com/acme/my-plugin.git#v1.0.0
    """
    progress = _progress_bar() if is_tty() else None
    with open_vultrino(home) as v:
        r = v.install_plugin(
            source,
            subdir=subdir,
            force=force,
            build=build,
            build_output=lambda line: err(line.rstrip("\n")),
            build_sandbox=build_sandbox,
            progress=progress,
        )
    for w in r.warnings:
        err(f"warning: {w}")
    if json_out:
        emit_json(
            {
                "name": r.name,
                "version": r.version,
                "path": str(r.path),
                "abi": r.abi,
                "sha256": r.sha256,
                "source": r.source,
                "ref": r.ref,
                "commit": r.commit,
                "replaced": r.replaced,
                "built": r.built,
            }
        )
    else:
        verb = "replaced" if r.replaced else "installed"
        err(f"{verb} {r.name} {r.version} (ABI {r.abi})")


def _progress_bar() -> Any:
    state = {"last": -1}

    def progress(done: int, total: int | None) -> None:
        pct = int(done * 100 / total) if total else -1
        if pct != state["last"]:
            state["last"] = pct
            shown = f"{pct:3d}%" if pct >= 0 else f"{done // 1024} KiB"
            sys.stderr.write(f"\rdownloading {shown}")
            sys.stderr.flush()
        if total and done >= total:
            sys.stderr.write("\n")

    return progress


@app.command("remove")
@handle_errors()
def plugin_remove(
    name: Annotated[str, typer.Argument(help="Plugin name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove an installed plugin and its cached compiled modules.

    Example: vultrino plugin remove totp --yes
    """
    with open_vultrino(home) as v:
        confirm_or_yes(f"Remove plugin {name!r}?", yes)
        path = v.remove_plugin(name)
    if json_out:
        emit_json({"removed": name, "path": str(path)})
    else:
        err(f"removed {name}")


@app.command("reload")
@handle_errors()
def plugin_reload(
    name: Annotated[str, typer.Argument(help="Plugin name.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-read and re-validate a plugin; a running MCP server picks the change up.

    Example: vultrino plugin reload totp
    """
    with open_vultrino(home) as v:
        p = v.reload_plugin(name)
        summary = _summary(p)
    if json_out:
        emit_json(summary)
    else:
        err(f"reloaded {name} {summary['version']}")


@app.command("new")
@handle_errors()
def plugin_new(
    name: Annotated[str, typer.Argument(help="Plugin name: lowercase letters, digits, '-'.")],
    path: Annotated[
        Path | None, typer.Option("--path", help="Where to create it (default: ./NAME).")
    ] = None,
    lang: Annotated[
        str, typer.Option("--lang", help="Template language: rust (default) or python.")
    ] = "rust",
) -> None:
    """Scaffold a plugin project (Rust, or Python with --lang python) from an SDK template.

    Example: vultrino plugin new my-plugin && cd my-plugin && cargo build --release
    """
    from vultrino.plugins.install.scaffold import new_plugin

    dest = new_plugin(name, path if path is not None else Path.cwd() / name, lang=lang)
    err(f"created {dest}")
    if lang == "python":
        err("next: edit app.py and plugin.toml, then `vultrino plugin install --build .` in it")
    else:
        err("next: edit src/lib.rs and plugin.toml, then `vultrino plugin install --build .` in it")


@app.command("logs")
@handle_errors()
def plugin_logs(
    name: Annotated[str, typer.Argument(help="Plugin name.")],
    lines: Annotated[
        int, typer.Option("-n", "--lines", min=0, help="How many of the last lines to print.")
    ] = 50,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing lines as the plugin logs them."),
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print the recent lines a plugin logged (scrubbed of secrets before they were written).

    With --json: a JSON array of {time, level, message}; with --follow too, one JSON object
    per line as each comes (stop with Ctrl-C).

    Example: vultrino plugin logs totp -n 20 --follow
    """
    from vultrino.policy.approval import shown

    def show(line: Any) -> None:
        if json_out:
            typer.echo(json.dumps(line.as_dict(), ensure_ascii=False))
        else:
            typer.echo(shown(f"{line.time} {line.level.upper():<5} {line.message}", lines=False))

    with open_vultrino(home) as v:
        if follow:
            for line in v.follow_plugin_logs(name, last=lines):
                show(line)
            return
        recent = v.plugin_logs(name, limit=lines)
        if json_out:
            emit_json([line.as_dict() for line in recent])
            return
        if not recent:
            err(f"plugin {name} has logged nothing yet")
        for line in recent:
            show(line)
