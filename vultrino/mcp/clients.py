"""Client configurations: what to paste into an MCP host to start or reach this Vultrino.

``vultrino mcp config`` prints :func:`client_config` (Claude Desktop/Code's ``mcpServers``,
VS Code's ``servers``, or a generic description) and :func:`client_config_note` (how the store
password reaches the server). A configuration never holds the store password: a stdio entry
names the file the server reads it from, :func:`password_file` (``VULTRINO_PASSWORD_FILE``, else
``~/.config/vultrino/password``), which lies outside the Vultrino home so that neither a backup
of the home nor anything that can read the home holds both the sealed store and its password.
:func:`check_password_file` refuses to vouch for a file that is missing or readable by others
(the server would not start).

::

    client_config(home, form="claude")              # `vultrino mcp config`
    client_config(home, http_port=8765, token=t)    # `vultrino mcp config --http`
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vultrino.errors import ConfigError
from vultrino.mcp.http import HTTP_PATH, TOKEN_FILE
from vultrino.paths import ENV_CONFIG

__all__ = [
    "CLIENT_FORMS",
    "check_password_file",
    "client_config",
    "client_config_note",
    "password_file",
]

ENV_PASSWORD_FILE = "VULTRINO_PASSWORD_FILE"  # noqa: S105 - a variable's name


def password_file(chosen: Path | str | None = None) -> Path:
    """The password file a stdio configuration names: ``chosen``, else
    ``$VULTRINO_PASSWORD_FILE``, else ``$XDG_CONFIG_HOME/vultrino/password`` (by default
    ``~/.config/vultrino/password``): outside the Vultrino home, never inside it by default."""
    if chosen is None:
        chosen = os.environ.get(ENV_PASSWORD_FILE) or None
    if chosen is None:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
        chosen = Path(config) / "vultrino" / "password"
    return Path(chosen).expanduser().absolute()


def check_password_file(path: Path, home: Path) -> list[str]:
    """:class:`ConfigError` unless ``path`` is a file only its owner can read or write (the
    server refuses any other, so a configuration naming it would not start); the warnings to
    show (a file inside the Vultrino home)."""
    try:
        st = path.stat()
    except OSError:
        raise ConfigError(
            f"the password file {path} does not exist, so an MCP host could not start the "
            "server with this configuration. Create it so only you can read it:\n"
            f"  mkdir -p -m 700 '{path.parent}' && "
            f"(umask 077; read -rs PW && printf '%s' \"$PW\" > '{path}'; unset PW)\n"
            f"then run this again (or name another file with --password-file or "
            f"{ENV_PASSWORD_FILE})"
        ) from None
    if not path.is_file():
        raise ConfigError(f"the password file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"the password file {path} is readable or writable by other users (mode "
            f"{st.st_mode & 0o777:o}), so the server would refuse it; run `chmod 600 {path}`"
        )
    warnings: list[str] = []
    real, root = Path(os.path.realpath(path)), Path(os.path.realpath(home))
    if real.is_relative_to(root):
        warnings.append(
            f"the password file {path} is inside the Vultrino home {home}: a backup or copy "
            "of the home then holds both the sealed store and its password; keep it "
            f"elsewhere, e.g. {password_file(Path('~/.config/vultrino/password'))}"
        )
    return warnings


def _server_command() -> list[str]:
    """How a host should start this Vultrino: the ``vultrino`` executable next to this Python
    (hosts such as Claude Desktop do not inherit the shell's PATH), else ``python -m vultrino``."""
    scripts = Path(sys.executable).parent
    for candidate in (scripts / "vultrino", scripts / "vultrino.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    found = shutil.which("vultrino")
    if found:
        return [str(Path(found).absolute())]
    return [sys.executable, "-m", "vultrino"]


CLIENT_FORMS = ("claude", "vscode", "generic")


def client_config(
    home: Path,
    *,
    form: str = "claude",
    http_port: int | None = None,
    command: Sequence[str] | None = None,
    name: str = "vultrino",
    token: str | None = None,
    agent: str | None = None,
    password: Path | None = None,
) -> dict[str, Any]:
    """The ready-to-paste client configuration for ``vultrino mcp config``.

    ``form="claude"`` is Claude Desktop's ``claude_desktop_config.json`` (``mcpServers``; also
    read by Claude Code's ``.mcp.json``, Cursor and others). ``form="vscode"`` is VS Code's
    ``.vscode/mcp.json`` (``servers``, each with a ``type``). ``form="generic"`` is a plain
    description any host's settings can be filled from. With ``http_port`` the entry points at
    ``vultrino mcp --http`` instead of spawning a process, and carries ``token`` (the HTTP
    bearer token; a placeholder naming the token file when None). Never contains the store
    password: it is read from the file the entry names in ``VULTRINO_PASSWORD_FILE``,
    ``password`` or else :func:`password_file` (see :func:`client_config_note`). With
    ``agent`` the server is started with ``--agent`` (stdio), or the placeholder names the
    agent's token (HTTP), which is never stored.
    """
    if form not in CLIENT_FORMS:
        raise ConfigError(
            f"unknown client configuration form {form!r}; use one of {', '.join(CLIENT_FORMS)}"
        )
    home = Path(home).expanduser().absolute()
    argv = list(command) if command is not None else _server_command()
    env = {
        "VULTRINO_HOME": str(home),
        ENV_PASSWORD_FILE: str(password if password is not None else password_file()),
    }
    config = os.environ.get(ENV_CONFIG)  # `vultrino -c PATH mcp config`: the server reads it too
    if config:
        env[ENV_CONFIG] = str(Path(config).expanduser().absolute())
    if http_port is not None:
        url = f"http://127.0.0.1:{http_port}{HTTP_PATH}"
        if agent is not None:
            bearer = f"<the token `vultrino agent add {agent}` printed>"
        elif token is not None:
            bearer = token
        else:
            bearer = f"<contents of {home / TOKEN_FILE}>"
        headers = {"Authorization": f"Bearer {bearer}"}
        if form == "claude":
            return {"mcpServers": {name: {"type": "http", "url": url, "headers": headers}}}
        if form == "vscode":
            return {"servers": {name: {"type": "http", "url": url, "headers": headers}}}
        return {"name": name, "transport": "streamable-http", "url": url, "headers": headers}
    args = [*argv[1:], "mcp", *(["--agent", agent] if agent is not None else [])]
    if form == "claude":
        return {"mcpServers": {name: {"command": argv[0], "args": args, "env": env}}}
    if form == "vscode":
        return {"servers": {name: {"type": "stdio", "command": argv[0], "args": args, "env": env}}}
    return {
        "name": name,
        "transport": "stdio",
        "command": argv[0],
        "args": args,
        "env": env,
    }


def client_config_note(home: Path, password: Path | None = None) -> str:
    """How the store password reaches the server, for ``vultrino mcp config`` to print."""
    pw = password if password is not None else password_file()
    return (
        "The MCP server unlocks the credential store once at start. Its stdin is the protocol, so "
        f"it cannot prompt: it reads the password from the file named by {ENV_PASSWORD_FILE} "
        f"(above: {pw}, outside the Vultrino home {Path(home).expanduser().absolute()}), or "
        "from VULTRINO_PASSWORD. Keep the file mode 0600, e.g.:\n"
        f"  mkdir -p -m 700 '{pw.parent}' && "
        f"(umask 077; read -rs PW && printf '%s' \"$PW\" > '{pw}'; unset PW)\n"
        "Never put the password itself in a client configuration file."
    )
