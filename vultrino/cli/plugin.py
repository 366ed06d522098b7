"""`vultrino plugin ...`: list, info, install, remove, reload, disable, enable, new, check, call,
dev, logs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vultrino.cli._common import (
    FormatOpt,
    HomeOpt,
    JsonOpt,
    confirm_or_yes,
    emit_json,
    err,
    handle_errors,
    home_arg,
    is_tty,
    never_sees,
    open_vultrino,
    table,
    wants_json,
)
from vultrino.errors import InstallError, ManifestError, ParameterError, VultrinoError

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


def _summary(plugin: Plugin, enabled: bool = True) -> dict[str, Any]:
    m = plugin.manifest
    meta = _metadata(plugin)
    return {
        "name": plugin.name,
        "version": m.plugin.version,
        "builtin": plugin.builtin,
        "status": "ok" if enabled else "disabled",
        "enabled": enabled,
        "description": m.plugin.description,
        "abi": meta.get("abi"),
        "credential_types": [t.name for t in m.credential_types],
        "actions": [a.name for a in m.actions],
        "tools": [t.name for t in m.mcp_tools],
        "source": meta.get("source"),
    }


@app.command("list")
@handle_errors()
def plugin_list(home: HomeOpt = None, json_out: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """List installed plugins, built-in first; broken ones are shown with their reason.

    Example: vultrino plugin list --json
    """
    json_out = wants_json(json_out, fmt)
    with open_vultrino(home) as v:
        rows = [_summary(p, v.plugin_enabled(p.name)) for p in v.plugins()]
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
                _tools_or_problem(r),
            )
            for r in rows
        ],
        ("name", "version", "status", "tools / problem"),
    )


def _tools_or_problem(row: dict[str, Any]) -> str:
    if row["status"] == "ok":
        return ", ".join(row.get("tools", []))
    if row["status"] == "disabled":
        return f"(off until `vultrino plugin enable {row['name']}`)"
    return str(row["reason"])


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
            **_summary(p, v.plugin_enabled(p.name)),
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
                    "never_sees": list(t.host_fields),
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
            "tools": [
                {
                    **t.__dict__,
                    "input_schema": json.loads(t.input_schema) if t.input_schema else None,
                    "parameter_mappings": dict(t.parameter_mappings),
                }
                for t in m.mcp_tools
            ],
            "http": _http_data(m.http),
            "warnings": list(m.warnings),
        }
    if json_out:
        emit_json(data)
        return
    typer.echo(f"{data['name']} {data['version']}  {data['description']}".rstrip())
    if not data["enabled"]:
        typer.echo(
            f"  disabled: its actions are refused and its tools are not listed "
            f"(`vultrino plugin enable {data['name']}`)"
        )
    for key in ("author", "license", "homepage", "repository", "wasm_module", "abi", "source"):
        if data.get(key):
            typer.echo(f"  {key}: {data[key]}")
    for t in data["credential_types"]:
        typer.echo(f"credential type {t['name']}: {t['description']}".rstrip(": "))
        for f in t["fields"]:
            flags = [f["type"]] + [k for k in ("required", "secret") if f[k]]
            if f["access"] == "host":
                flags.append("host-only")
            typer.echo(f"    {f['name']}: {', '.join(flags)}")
        if t["never_sees"]:
            typer.echo(f"    {never_sees(m.credential_type(t['name']))}")
    for a in data["actions"]:
        typer.echo(f"action {a['name']}: {a['description']}".rstrip(": "))
        for q in a["parameters"]:
            req = ", required" if q["required"] else ""
            typer.echo(f"    {q['name']}: {q['type']}{req}")
    for t in data["tools"]:
        renames = ", ".join(f"{a} = {p}" for a, p in t["parameter_mappings"].items())
        extra = " (own input_schema)" if t["input_schema"] else ""
        extra += f" (renames: {renames})" if renames else ""
        typer.echo(f"mcp tool {t['name']} -> {t['action']}{extra}")
    line = http_line(m.http)
    if line:
        typer.echo(line)
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
        http = v.plugin(r.name).manifest.http
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
                "http": _http_data(http),
            }
        )
    else:
        verb = "replaced" if r.replaced else "installed"
        err(f"{verb} {r.name} {r.version} (ABI {r.abi})")
        line = http_line(http)
        if line:
            err(line)


def _http_data(spec: Any) -> dict[str, list[str]] | None:
    """A manifest's ``[http]`` for --json: the hosts and auth schemes, or None."""
    return None if spec is None else {"hosts": list(spec.hosts), "auth": list(spec.auth)}


def http_line(spec: Any) -> str | None:
    """The line saying where a plugin may send requests through Vultrino, or None."""
    if spec is None:
        return None
    return (
        f"sends HTTP requests through Vultrino (credential added by Vultrino: "
        f"{', '.join(spec.auth)}) only to: {', '.join(spec.hosts)}"
    )


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


def _set_enabled(name: str, enabled: bool, home: Path | None, json_out: bool) -> None:
    with open_vultrino(home) as v:
        changed = v.set_plugin_enabled(name, enabled)
    word = "enabled" if enabled else "disabled"
    if json_out:
        emit_json({"name": name, "enabled": enabled, "changed": changed})
    elif changed:
        err(
            f"{word} {name}"
            + (
                ""
                if enabled
                else f": its tools are off and its actions refused until "
                f"`vultrino plugin enable {name}`"
            )
        )
    else:
        err(f"{name} was already {word}")


@app.command("disable")
@handle_errors()
def plugin_disable(
    name: Annotated[str, typer.Argument(help="Plugin name.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Turn a plugin off without removing it: its MCP tools vanish and its actions are refused
    until `vultrino plugin enable NAME`; credentials of its types stay. Kept across restarts;
    a running server picks it up.

    Example: vultrino plugin disable pgp-signing
    """
    _set_enabled(name, False, home, json_out)


@app.command("enable")
@handle_errors()
def plugin_enable(
    name: Annotated[str, typer.Argument(help="Plugin name.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Turn a disabled plugin back on (its tools and actions return).

    Example: vultrino plugin enable pgp-signing
    """
    _set_enabled(name, True, home, json_out)


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
        err(
            "next: edit src/lib.rs and plugin.toml, then `vultrino plugin dev .` in it (builds, "
            "installs, and reinstalls on each save), or `vultrino plugin install --build .`"
        )


BuildSandboxOpt = Annotated[
    str | None,
    typer.Option(
        "--build-sandbox",
        help="auto | require | off (see `plugin install --help`). Default: config.toml "
        "[build] sandbox, else auto.",
        metavar="auto|require|off",
    ),
]


def _locate_manifest_errors(directory: Path, exc: ManifestError) -> ManifestError:
    """The manifest error with each problem as ``<file>:<line>: ...`` in the author's file."""
    from vultrino.plugins.manifest_lines import annotate

    manifest = directory / "plugin.toml"
    if not exc.problems or not manifest.is_file():
        return exc
    problems = annotate(manifest.resolve(), exc.problems)
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return ManifestError(
        f"{manifest.resolve()}: invalid plugin manifest ({count}); see docs/plugins/manifest.md",
        plugin=exc.plugin,
        problems=problems,
    )


@app.command("check")
@handle_errors()
def plugin_check(
    directory: Annotated[Path, typer.Argument(help="The plugin's directory (holds plugin.toml).")],
    build: Annotated[
        bool, typer.Option("--build", help="Build the module when it is missing or stale.")
    ] = False,
    build_sandbox: BuildSandboxOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a plugin as `install` would, installing nothing: the manifest, the module's ABI
    (imports, exports, instantiation), conflicts with what is installed.

    Example: vultrino plugin check ./my-plugin
    """
    try:
        with open_vultrino(home) as v:
            r = v.install_plugin(
                str(directory),
                build=build,
                build_output=lambda line: err(line.rstrip("\n")),
                build_sandbox=build_sandbox,
                dry_run=True,
            )
    except ManifestError as exc:
        raise _locate_manifest_errors(directory, exc) from None
    for w in r.warnings:
        err(f"warning: {w}")
    if json_out:
        emit_json(
            {
                "ok": True,
                "name": r.name,
                "version": r.version,
                "abi": r.abi,
                "sha256": r.sha256,
                "built": r.built,
                "installed": r.replaced,
                "warnings": r.warnings,
                "notes": r.notes,
            }
        )
    else:
        err(f"ok: {r.name} {r.version} (ABI {r.abi}) can be installed")


def _call_source(source: Path) -> tuple[Path, Path | None]:
    """(the plugin directory, the module to use or None) for `plugin call SOURCE`: a module's
    plugin.toml is the one beside it or in the nearest directory above."""
    if source.is_dir():
        return source, None
    if source.suffix != ".wasm" or not source.is_file():
        raise InstallError(
            f"{source}: not a plugin directory or a .wasm module; give the directory that "
            "holds plugin.toml, or a module built from it"
        )
    for parent in source.resolve().parents:
        if (parent / "plugin.toml").is_file():
            return parent, source
    raise InstallError(
        f"{source}: no plugin.toml beside the module or in a directory above it; a module "
        "needs its manifest (actions, parameters, credential types): give the plugin's "
        "directory instead"
    )


@app.command("call")
@handle_errors()
def plugin_call(
    source: Annotated[
        Path,
        typer.Argument(
            help="The plugin's directory, or a .wasm module (its plugin.toml is the one "
            "beside it or above it)."
        ),
    ],
    action: Annotated[str, typer.Option("--action", "-a", help="The action to run.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE (repeatable).")
    ] = None,
    params_json: Annotated[
        str | None, typer.Option("--params-json", help="Parameters as a JSON object (or @file).")
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            help="A field of the throwaway credential: NAME=VALUE, NAME=@file or NAME=- "
            "(stdin). Repeatable; missing ones are prompted for on a terminal.",
        ),
    ] = None,
    type_: Annotated[
        str | None,
        typer.Option("--type", help="The credential type, when the action accepts more than one."),
    ] = None,
    build: Annotated[
        bool, typer.Option("--build", help="Build the module when it is missing or stale.")
    ] = False,
    build_sandbox: BuildSandboxOpt = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print exactly the result, nothing added.")
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run an action of a plugin that is not installed, with a throwaway credential.

    The plugin is checked as `install` checks it and run the way installed plugins run (same
    runtime, limits and scrubbing), in a temporary home with no password that is deleted
    afterwards; nothing of your store is read. Only the build cache is shared.

    Examples:

      vultrino plugin call . --action greet --param name=Ada --field token=@token.txt

      vultrino plugin call target/wasm32-wasip1/release/my_plugin.wasm -a greet -p name=Ada
    """
    from vultrino.cli.credentials import (
        _field_values,
        _params,
        _print_result,
        _prompt_missing,
        _warn_secret_on_argv,
    )
    from vultrino.core import Vultrino

    if raw and json_out:
        raise ParameterError("--raw and --json are different outputs: pick one")
    directory, module = _call_source(source)
    params = _params(param or [], params_json)
    values, on_argv = _field_values(field or [])
    try:
        with Vultrino.scratch(home_arg(home)) as v:
            r = v.install_plugin(
                str(directory),
                build=build,
                build_output=lambda line: err(line.rstrip("\n")),
                build_sandbox=build_sandbox,
                module=module,
            )
            for w in r.warnings:
                err(f"warning: {w}")
            act = v.plugin(r.name).manifest.require_action(action)
            if not act.needs_credential:
                if field:
                    raise ParameterError(
                        f"action {action!r} needs no credential: leave out --field"
                    )
                result = v.run_action(r.name, action, params, from_cli=True, source="cli")
            else:
                accepted = act.accepted_types
                if type_ is None and len(accepted) > 1:
                    raise ParameterError(
                        f"action {action!r} accepts credentials of types {', '.join(accepted)}: "
                        "pick one with --type"
                    )
                kind = type_ or accepted[0]
                if kind not in accepted:
                    raise ParameterError(
                        f"action {action!r} does not take a credential of type {kind!r}; it "
                        f"takes {', '.join(accepted)}"
                    )
                full = f"plugin:{r.name}:{kind}"
                _, spec = v.credential_type(full)
                _warn_secret_on_argv(spec, on_argv)
                _prompt_missing(spec, values)
                v.add_credential(CALL_ALIAS, full, values)
                result = v.execute(CALL_ALIAS, action, params, from_cli=True, source="cli")
    except ManifestError as exc:
        raise _locate_manifest_errors(directory, exc) from None
    _print_result(result, json_out, raw, None)


#: The alias of `plugin call`'s throwaway credential (what the plugin sees as its alias).
CALL_ALIAS = "plugin-call"


@app.command("dev")
@handle_errors(json_flag=None)
def plugin_dev(
    directory: Annotated[Path, typer.Argument(help="The plugin's directory (holds plugin.toml).")],
    release: Annotated[
        bool,
        typer.Option(
            "--release",
            help="Build with the crate's own release profile (LTO...), as `install --build` "
            "does; by default a quick profile (no LTO, incremental) keeps rebuilds short.",
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between looks at the sources.", min=0.05)
    ] = 0.3,
    build_sandbox: BuildSandboxOpt = None,
    home: HomeOpt = None,
) -> None:
    """Build and install a plugin, then rebuild and reinstall it whenever its sources change.

    Running `vultrino mcp` servers pick up each new version. Ctrl-C stops.

    Example: vultrino plugin dev ./my-plugin
    """
    import time

    from vultrino.plugins.install.devloop import watch

    if not (directory / "plugin.toml").is_file():
        raise InstallError(f"{directory}: no plugin.toml here; give the plugin's directory")
    with open_vultrino(home) as v:

        def step() -> None:
            started = time.monotonic()
            try:
                r = v.install_plugin(
                    str(directory),
                    force=True,
                    build=True,
                    fast_build=not release,
                    build_output=lambda line: err(line.rstrip("\n")),
                    build_sandbox=build_sandbox,
                )
            except ManifestError as exc:
                located = _locate_manifest_errors(directory, exc)
                err(f"error: {located}")
                for p in located.problems:
                    err(f"  - {p}")
                err("vultrino: waiting for the next change")
                return
            except VultrinoError as exc:
                err(f"error: {exc}")
                err("vultrino: waiting for the next change")
                return
            for w in r.warnings:
                err(f"warning: {w}")
            took = time.monotonic() - started
            err(f"installed {r.name} {r.version} (ABI {r.abi}, {r.sha256[:12]}) in {took:.1f} s")
            err(f"vultrino: watching {directory.resolve()} (Ctrl-C stops)")

        watch(directory, step, interval=interval)


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
