"""`vultrino demo`: the whole flow on a throwaway home, so a newcomer sees it work."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from vultrino.cli._common import handle_errors

DEMO_SECRET = "JBSWY3DPEHPK3PXP"  # noqa: S105 - the well-known demo TOTP secret ("Hello!" in base32)


def shipped_plugin(name: str) -> Path:
    """The directory of a first-party plugin with its prebuilt module (the checkout's
    ``plugins/NAME``, else the wheel's copy)."""
    from vultrino.errors import PluginError
    from vultrino.plugins.install._shipped import first_party

    found = first_party(name)
    if found is None:
        raise PluginError(
            f"the first-party plugin {name!r} is missing from this Vultrino installation; "
            "reinstall vultrino",
            plugin=name,
        )
    return found


@handle_errors(json_flag=None)
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the throwaway home afterwards.")
    ] = False,
    engine: Annotated[
        str | None, typer.Option("--engine", help="wasmtime (default) or wasmer.")
    ] = None,
) -> None:
    """Run the whole flow on a throwaway home: install a plugin, add a credential, run an
    action, list the MCP tools. Nothing outside the temporary directory is touched.

    Example: vultrino demo
    """
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    root = Path(tempfile.mkdtemp(prefix="vultrino-demo-"))
    say = typer.echo
    try:
        home = root / "home"
        password = secrets.token_urlsafe(24)
        say(f"1. A throwaway home at {home}, sealed with a random password.")
        Vultrino.init(home, password, kdf=KdfParams.default()).close()
        with Vultrino.open(home, password, engine=engine) as v:
            say(f"   engine: {' '.join(v.engine)}")
            r = v.install_plugin(str(shipped_plugin("totp")))
            say(f"2. Installed plugin {r.name} {r.version} (ABI {r.abi}, sha256 {r.sha256[:12]}…).")
            v.add_credential(
                "demo-totp",
                "plugin:totp:totp",
                {"secret": DEMO_SECRET},
                description="demo one-time-code seed",
            )
            say("3. Added credential 'demo-totp' (type plugin:totp:totp). What `list` shows:")
            for c in v.credentials():
                say(f"     {c.alias}  {c.type}  fields={c.fields}")
            result = v.execute("demo-totp", "code", {})
            say("4. An agent asks for action 'code' on alias 'demo-totp' and gets only:")
            say(f"     {result}")
            say("5. The MCP tools an agent sees (`vultrino mcp`):")
            for t in v.tools():
                say(f"     {t.name}: {t.description}")
        say("The secret never left the store; the agent only ever named 'demo-totp'.")
    finally:
        if keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
