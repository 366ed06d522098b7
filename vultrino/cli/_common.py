"""What every command shares: the --home option, opening the facade, output and error handling.

Data goes to stdout, messages to stderr. With ``--json`` stdout carries exactly one JSON document
(an error becomes ``{"error": {"type": ..., "message": ...}}``). Exit codes are the
``exit_code`` of the error class (docs/cli.md lists them).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from vultrino.errors import VultrinoError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from vultrino.cli._remote import Calls, RemoteTarget
    from vultrino.core import Vultrino
    from vultrino.policy.approval import Approval, ApprovalRequest

F = TypeVar("F", bound=Callable[..., Any])

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Vultrino home directory (default: $VULTRINO_HOME or ~/.vultrino).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DebugOpt = Annotated[
    bool,
    typer.Option(
        "--debug",
        help="When a plugin fails, also print its log lines and traceback (scrubbed) on "
        "stderr; the same as VULTRINO_LOG=debug.",
    ),
]


FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="table or json (the original Vultrino's flag; -f json is --json).",
        show_default=False,
    ),
]


def wants_json(json_out: bool, fmt: str | None) -> bool:
    """Whether a listing prints JSON: ``--json``, or ``-f/--format json``."""
    if fmt is None:
        return json_out
    if fmt not in ("table", "json"):
        err(f"error: -f/--format takes table or json, not {fmt[:20]!r}")
        raise typer.Exit(2)
    if fmt == "table" and json_out:
        err("error: --json and -f table ask for different outputs: pick one")
        raise typer.Exit(2)
    return fmt == "json"


#: ``VULTRINO_LOG``: how much the CLI says about a plugin's failure. ``debug`` adds the
#: plugin's log lines and traceback; the others keep the one-line error.
LOG_ENV = "VULTRINO_LOG"
LOG_LEVELS = ("debug", "info", "warn", "error")

_state: dict[str, Any] = {"home": None, "remote": None, "verbose": 0, "logged_home": None}


def setup_logging(home: Path | None, verbose: int | None = None) -> None:
    """Set up the diagnostic log (``-v``/``-vv``, else ``[logging]`` of the config file the
    command will use). A broken config file is left for the command to report, as it would
    without logging; until then the log runs on the flags alone."""
    if verbose is not None:
        _state["verbose"] = verbose
    verbose = _state["verbose"]
    from vultrino.paths import resolve_home

    path = resolve_home(home).config
    if not verbose and not path.is_file() and "vultrino.cli._logging" not in sys.modules:
        return  # nothing asks for a log (and logging is not even imported)
    from vultrino.cli import _logging
    from vultrino.config import read_logging

    try:
        configured, fmt = read_logging(path)
    except VultrinoError:
        configured, fmt = None, "text"
    _logging.configure(_logging.level_for(verbose, configured), fmt)
    _state["logged_home"] = home


def set_root_home(home: Path | None) -> None:
    _state["home"] = home


def set_remote(where: RemoteTarget | None) -> None:
    _state["remote"] = where


def remote() -> RemoteTarget | None:
    """The server the remote-capable commands talk to (``--remote`` or VULTRINO_API_URL)."""
    where: RemoteTarget | None = _state["remote"]
    return where


def open_calls(home: Path | None) -> AbstractContextManager[Calls]:
    """What ``list``, ``info`` and ``request`` call: the server's REST API when a remote is
    set (``--remote`` or VULTRINO_API_URL; ``--home`` is then not used), else the home's
    facade."""
    where = remote()
    if where is not None:
        from vultrino.cli._remote import Remote

        return Remote(where)
    return open_vultrino(home)


def home_arg(home: Path | None) -> Path | None:
    """The command's --home, else the root --home, else None (VULTRINO_HOME / default)."""
    if home is not None and home != _state["logged_home"]:
        setup_logging(home)  # its config file's [logging], not the root home's
    return home if home is not None else _state["home"]


def err(message: str) -> None:
    typer.echo(message, err=True)


FieldOpt = Annotated[
    str | None,
    typer.Option(
        "--field",
        "-F",
        help="Print only this value of the result: a key, or a dotted path (code, "
        "fields.key, 0.alias); a string is printed as it is, anything else as JSON.",
    ),
]


def select(value: Any, path: str) -> Any:
    """The part of ``value`` at ``path`` (``a.b.0.c``, a leading ``.`` allowed), or
    ParameterError naming what was there instead."""
    from vultrino.errors import ParameterError

    current = value
    walked: list[str] = []
    for step in path.lstrip(".").split("."):
        if isinstance(current, dict):
            if step not in current:
                keys = ", ".join(sorted(map(str, current))) or "none"
                where = ".".join(walked) or "the result"
                raise ParameterError(f"--field {path}: {where} has no {step!r} (keys: {keys})")
            current = current[step]
        elif isinstance(current, list):
            if not step.lstrip("-").isdigit() or not -len(current) <= int(step) < len(current):
                where = ".".join(walked) or "the result"
                raise ParameterError(
                    f"--field {path}: {where} is a list of {len(current)}; {step!r} is not an "
                    "index in it"
                )
            current = current[int(step)]
        else:
            where = ".".join(walked) or "the result"
            raise ParameterError(
                f"--field {path}: {where} is a {type(current).__name__}, not an object or a list"
            )
        walked.append(step)
    return current


def emit_field(value: Any, path: str) -> None:
    """Print ``value``'s part at ``path``: a string as it is (one newline), else JSON."""
    part = select(value, path)
    if isinstance(part, str):
        typer.echo(part)
    else:
        emit_json(part)


def never_sees(spec: Any) -> str | None:
    """The line saying which fields of a credential type its plugin never sees (declared
    ``access = "host"``: only Vultrino's keys interface uses them), or None."""
    names = getattr(spec, "host_fields", ())
    if not names:
        return None
    return f"this plugin never sees: {', '.join(names)} (Vultrino uses it for the plugin)"


def emit_json(data: Any) -> None:
    from vultrino._json import jsonable

    typer.echo(json.dumps(jsonable(data), indent=2, sort_keys=False))


def is_tty() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def prompt_secret(label: str) -> str:
    """Hidden input on the terminal (getpass writes the prompt to the tty, not stdout)."""
    import getpass

    return getpass.getpass(label)


def terminal_prompt() -> Callable[[str], str] | None:
    """A hidden password prompt when attached to a terminal, else None (so no hang)."""
    return prompt_secret if is_tty() else None


def open_vultrino(
    home: Path | None,
    *,
    engine: str | None = None,
    unlock: bool = False,
    use_session: bool = True,
) -> Vultrino:
    """The facade of the home. ``unlock`` opens the store at once (asking for the password
    first, before any other prompt of the command); ``use_session=False`` ignores a running
    unlock session (the command needs the password itself)."""
    from vultrino.core import Vultrino

    v = Vultrino.open(
        home_arg(home), prompt=terminal_prompt(), engine=engine, use_session=use_session
    )
    if is_tty():
        v.set_approver(terminal_approver)  # a `prompt` policy asks the person at the terminal
    if unlock:
        try:
            v.unlock()
        except BaseException:
            v.close()
            raise
    return v


def terminal_approver(request: ApprovalRequest) -> Approval:
    """Ask on the terminal whether a call a ``prompt`` policy gates may run (default: no;
    Ctrl-C stops the command, exit 130)."""
    granted = typer.confirm(request.message(), default=False, err=True)
    return "granted" if granted else "declined"


def log_level() -> str:
    """``VULTRINO_LOG`` (lower-cased; ``info`` when unset); ConfigError for another value."""
    import os

    from vultrino.errors import ConfigError

    raw = os.environ.get(LOG_ENV, "").strip().lower()
    if not raw:
        return "info"
    if raw not in LOG_LEVELS:
        raise ConfigError(
            f"{LOG_ENV}={os.environ[LOG_ENV][:40]!r} is not a log level; use one of "
            f"{', '.join(LOG_LEVELS)} (debug shows a failing plugin's log and traceback)"
        )
    return raw


def debug_wanted(flag: bool) -> bool:
    """``--debug``, ``VULTRINO_LOG=debug``, or a log at debug level (``-vv``)."""
    if flag or log_level() == "debug":
        return True
    logs = sys.modules.get("vultrino.cli._logging")
    return logs is not None and bool(logs.debugging())


def print_detail(detail: dict[str, Any]) -> None:
    """A plugin failure's ``detail`` (already scrubbed by the pipeline) on stderr: its
    exception and traceback, innermost call last, then its log lines."""
    from vultrino.policy.approval import shown

    frames = detail.get("traceback") or []
    if frames or detail.get("exception"):
        err("plugin traceback (most recent call last):")
        for f in frames:
            line = f.get("line")
            where = f"{f.get('file', '?')}:{line}" if line is not None else f.get("file", "?")
            err(shown(f"  {where} in {f.get('function', '?')} ({f.get('module', '?')})"))
        kind, text = detail.get("exception") or "", detail.get("message") or ""
        if kind:
            err(shown(f"{kind}: {text}" if text else kind))
    lines = detail.get("log") or []
    if lines:
        err(f"plugin log ({len(lines)} line{'s' if len(lines) != 1 else ''} from this call):")
        for entry in lines:
            err(shown(f"  [{entry.get('level', '?')}] {entry.get('message', '')}"))
    if not frames and not lines and not detail.get("exception"):
        err("the plugin wrote no log lines and reported no traceback")


def handle_errors(
    json_flag: str | None = "json_out", debug_flag: str = "debug"
) -> Callable[[F], F]:
    """Turn VultrinoError into a one-line message on stderr and its exit code. With the
    command's ``--debug`` (``debug_flag``) or ``VULTRINO_LOG=debug``, a plugin failure's
    ``detail`` follows (and joins the ``--json`` error object)."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except VultrinoError as exc:
                try:
                    debug = debug_wanted(bool(kwargs.get(debug_flag)))
                except VultrinoError:
                    debug = False  # a bad VULTRINO_LOG must not hide the error at hand
                detail = exc.detail if debug else None
                if json_flag and kwargs.get(json_flag):
                    error: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
                    if debug:
                        error["detail"] = detail
                    emit_json({"error": error})
                message = str(exc)
                err(f"error: {message}")
                # A manifest error's message usually lists its problems already: print only
                # those it does not, so each is said once
                for p in getattr(exc, "problems", None) or ():
                    if f"- {p}" not in message:
                        err(f"  - {p}")
                if detail is not None:
                    print_detail(detail)
                elif debug and getattr(exc, "plugin", None):
                    err("(the plugin reported nothing more about this failure)")
                raise typer.Exit(exc.exit_code) from None
            except (KeyboardInterrupt, typer.Abort):
                # Typer's prompts turn Ctrl-C into Abort ("Aborted!", exit 1): every
                # interruption exits 130, as a shell reports SIGINT
                err("interrupted")
                raise typer.Exit(130) from None

        return wrapper  # type: ignore[return-value]

    return deco


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> None:
    """A plain aligned table on stdout. Cells are shown with every control, format and bidi
    character escaped: a value an agent chose (an alias it made up, an error message) cannot
    start a line of its own, overwrite one or reorder what follows."""
    from vultrino.policy.approval import shown

    rows = [[shown(c, lines=False) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    typer.echo(line)
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def confirm_or_yes(question: str, yes: bool) -> None:
    """Ask on a terminal. Without one, a first line ``y`` or ``yes`` piped on stdin confirms
    (``echo y | vultrino plugin remove NAME``, as the original Vultrino read it) and any other
    line declines; with nothing on stdin, --yes is demanded."""
    if yes:
        return
    if not is_tty():
        line = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.readline()
        if line:
            answer = line.strip().lower()
            err(f"{question} [y/N]: {answer[:10]}")
            if answer in ("y", "yes"):
                return
            err("aborted")
            raise typer.Exit(1)
        err("error: refusing to proceed without confirmation: pass --yes (or pipe 'y')")
        raise typer.Exit(2)
    if not typer.confirm(question, err=True):
        err("aborted")
        raise typer.Exit(1)


#: The most bytes a value read from a file or stdin (``@PATH``, ``-``) may hold.
MAX_READ_VALUE_BYTES = 16 * 1024 * 1024


def read_limited(fh: Any, limit: int) -> bytes | None:
    """At most ``limit`` bytes of the binary stream ``fh``; None when it holds more (it is
    not read further: ``/dev/zero`` or an endless pipe ends here, not in memory)."""
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = fh.read(min(1024 * 1024, limit + 1 - size))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        size += len(chunk)
    return None


def read_value(raw: str, *, what: str) -> str:
    """``@path`` reads a file, ``-`` reads stdin, anything else is the value itself. What is
    read must be UTF-8 text of at most :data:`MAX_READ_VALUE_BYTES`, else exit 2 saying so."""
    if raw == "-":
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text stream without bytes under it (an embedding's stdin)
            text = sys.stdin.read(MAX_READ_VALUE_BYTES + 1)
            return text if len(text) <= MAX_READ_VALUE_BYTES else _too_large(what, "stdin")
        return _text(read_limited(stream, MAX_READ_VALUE_BYTES), what, "stdin")
    if raw.startswith("@"):
        path = Path(raw[1:]).expanduser()
        try:
            with path.open("rb") as fh:
                data = read_limited(fh, MAX_READ_VALUE_BYTES)
        except OSError as exc:
            err(f"error: {what}: cannot read {path}: {exc.strerror}")
            raise typer.Exit(2) from None
        return _text(data, what, str(path))
    return raw


def _text(data: bytes | None, what: str, where: str) -> str:
    if data is None:
        return _too_large(what, where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        err(
            f"error: {what}: {where} is not UTF-8 text; encode a binary value first "
            "(e.g. `base64 FILE > FILE.b64`)"
        )
        raise typer.Exit(2) from None


def _too_large(what: str, where: str) -> NoReturn:
    err(
        f"error: {what}: {where} holds more than {MAX_READ_VALUE_BYTES} bytes (16 MiB), the "
        "most a value read from a file or stdin may; nothing was changed"
    )
    raise typer.Exit(2)


def split_pair(raw: str, *, option: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        err(f"error: {option} expects KEY=VALUE, got {raw.split('=', maxsplit=1)[0]!r}...")
        raise typer.Exit(2)
    return key.strip(), value
