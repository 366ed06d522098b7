"""The original Vultrino's command names, as a thin layer over today's commands.

``vultrino action CRED PLUGIN.ACTION -p JSON [-q]`` (alias ``exec``) is ``vultrino request
CRED --plugin PLUGIN --action ACTION --params-json JSON``; its ``-p`` is the original's (a JSON
object), not ``request``'s ``--param NAME=VALUE``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from vultrino.cli._common import (
    HomeOpt,
    JsonOpt,
    err,
    handle_errors,
    open_vultrino,
    read_value,
)


def _split(target: str) -> tuple[str, str]:
    from vultrino.errors import ParameterError

    plugin, dot, action = target.partition(".")
    if not (dot and plugin and action):
        raise ParameterError(
            f"{target[:60]!r} is not PLUGIN.ACTION: write the plugin and its action with a dot "
            "between them (pgp-signing.sign_cleartext); `vultrino plugin info PLUGIN` lists "
            "the actions"
        )
    return plugin, action


def _json_params(raw: str | None) -> dict[str, Any]:
    from vultrino.errors import ParameterError

    if raw is None:
        return {}
    try:
        loaded = json.loads(read_value(raw, what="-p/--params"))
    except json.JSONDecodeError as exc:
        raise ParameterError(
            f"-p/--params is not valid JSON ({exc.msg} at column {exc.colno}): give an "
            """object such as '{"message": "hi"}'"""
        ) from None
    if not isinstance(loaded, dict):
        raise ParameterError(
            f"-p/--params must be a JSON object of parameters, not a {type(loaded).__name__}"
        )
    return loaded


@handle_errors()
def action(
    credential: Annotated[str, typer.Argument(help="The credential's alias (or id).")],
    target: Annotated[str, typer.Argument(help="PLUGIN.ACTION, e.g. pgp-signing.sign_cleartext.")],
    params: Annotated[
        str | None,
        typer.Option("--params", "-p", help="The action's parameters as a JSON object (or @file)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the result, no status line.")
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a plugin action with a credential (the original Vultrino's form of `request`).

    Example: vultrino action release-key pgp-signing.sign_cleartext -p '{"message": "hi"}'
    """
    from vultrino.cli.credentials import _print_result, suggesting

    plugin, act = _split(target)
    values = _json_params(params)
    with open_vultrino(home) as v, suggesting(v, credential):
        result = v.execute(credential, act, values, from_cli=True, plugin=plugin, source="cli")
    if not quiet and not json_out:
        err(f"{plugin}.{act} with {credential}: ok")
    _print_result(result, json_out, False, None)


def register(app: typer.Typer) -> None:
    app.command("action")(action)
    app.command("exec", hidden=True, help="The original Vultrino's alias of `action`.")(action)
