"""Running hostile guests through the three ways in: the Python API, the CLI, MCP.

Each ``*_trial`` function runs one guest's ``misbehave`` action (repeatedly, for the guest whose
answers grow) and then its ``ping`` on the same host, and returns a :class:`~.corpus.Trial` for
:func:`~.corpus.judge`. Nothing here is mocked: the API is one long-lived ``Vultrino``; the CLI
is the Typer app in-process (``CliRunner``) or a real ``python -m vultrino`` per command; MCP is a
real ``python -m vultrino mcp`` process spoken to over raw JSON-RPC (``tests/e2e/mcp_helpers``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from tests.leakcheck import LeakCheck
from tests.reliability.corpus import (
    HANG_GUARD_S,
    MAX_GROWTH_CALLS,
    MIB,
    PING_MESSAGE,
    PING_PARAMS,
    CorpusHome,
    Guest,
    Trial,
)
from vultrino import errors


class PeakMemory:
    """A process's peak resident memory during a block: ``/proc/<pid>/clear_refs`` resets the
    high-water mark (``VmHWM``), which is read afterwards. ``growth_mib`` stays None where the
    kernel does not offer that (not Linux, or not allowed)."""

    def __init__(self, pid: int | str = "self") -> None:
        self.pid = pid
        self.growth_mib: float | None = None
        self._before: int | None = None

    def _status(self, key: str) -> int | None:
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                found = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
        except OSError:
            return None
        return int(found.group(1)) * 1024 if found else None

    def __enter__(self) -> PeakMemory:
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
        except OSError:
            return self
        self._before = self._status("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        peak = self._status("VmHWM")
        if self._before is not None and peak is not None:
            self.growth_mib = max(0, peak - self._before) / MIB


@contextlib.contextmanager
def plugin_log() -> Iterator[list[str]]:
    """Collect every plugin log line (any level) emitted in-process while the block runs."""
    lines: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("vultrino.plugin")
    handler = _Collect(logging.DEBUG)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# --- the Python API ----------------------------------------------------------------------------


def api_trial(home: CorpusHome, v: Any, guest: Guest) -> Trial:
    """``guest`` through one long-lived :class:`~vultrino.Vultrino` facade ``v``."""
    trial = Trial(guest.stem, "api")
    seen = trial.outputs
    with plugin_log() as log_lines:
        if guest.refused:
            try:
                v.install_plugin(str(home.sources / guest.plugin), force=True)
                trial.notes.append("install --force of the refused module succeeded")
            except errors.VultrinoError as exc:
                trial.refused = (type(exc).__name__, str(exc))
                seen.append(("install error", str(exc)))
        started = time.perf_counter()
        with PeakMemory() as peak:
            _api_misbehave(v, guest, trial, seen)
        trial.seconds = time.perf_counter() - started
        trial.host_growth_mib = peak.growth_mib
        if not guest.refused:
            try:
                pong = v.execute(guest.alias, "ping", PING_PARAMS)
                seen.append(("ping result", pong))
                trial.usable = pong == guest.pong
                if not trial.usable:
                    trial.notes.append(f"ping answered {pong!r:.300}")
            except errors.VultrinoError as exc:
                trial.usable = False
                trial.notes.append(f"ping failed: {type(exc).__name__}: {exc}")
        trial.survived = _api_alive(v, trial)
    seen.append(("plugin log", "\n".join(log_lines)))
    return trial


def _api_misbehave(v: Any, guest: Guest, trial: Trial, seen: list[tuple[str, Any]]) -> None:
    calls = MAX_GROWTH_CALLS if guest.expect.grows else 1
    for _ in range(calls):
        try:
            trial.result = v.execute(guest.alias, "misbehave", guest.misbehave_params)
        except errors.VultrinoError as exc:
            trial.error = (type(exc).__name__, str(exc))
            seen.append(("misbehave error", str(exc)))
            plugin = getattr(exc, "plugin", None)
            if plugin != guest.plugin:
                trial.notes.append(f"the error's .plugin is {plugin!r}, not {guest.plugin!r}")
            return
        except Exception as exc:  # a foreign exception escaping the facade is a defect
            trial.error = (type(exc).__name__, str(exc))
            trial.notes.append(f"a non-Vultrino exception escaped: {type(exc).__name__}: {exc}")
            return
        seen.append(("misbehave result", trial.result))
        if guest.expect.grows and isinstance(trial.result, (bytes, bytearray)):
            trial.sizes.append(len(trial.result))


def _api_alive(v: Any, trial: Trial) -> bool:
    try:
        v.credentials()
        return True
    except Exception as exc:
        trial.notes.append(f"the facade no longer works: {type(exc).__name__}: {exc}")
        return False


# --- the CLI -----------------------------------------------------------------------------------

#: ``(args) -> (exit code, stdout, stderr, crashed)``; ``crashed`` describes an unhandled
#: exception or a death by signal, else is "".
CliRun = Callable[[Sequence[str]], tuple[int, str, str, str]]


def cli_in_process(home: CorpusHome) -> CliRun:
    """The Typer app in this process (CliRunner), on ``home``."""
    from typer.testing import CliRunner

    from vultrino.cli import app

    runner = CliRunner()
    env = {"VULTRINO_PASSWORD_FILE": str(home.password_file), "VULTRINO_HOME": str(home.root)}

    def run(args: Sequence[str]) -> tuple[int, str, str, str]:
        r = runner.invoke(app, ["--home", str(home.root), *args], env=env)
        crashed = ""
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            crashed = f"{type(r.exception).__name__}: {r.exception}"
        return r.exit_code, r.stdout, r.stderr, crashed

    return run


class _Subprocess:
    """A real ``python -m vultrino`` process per command; ``last_peak`` is the peak resident
    memory (bytes) of the last one, from the kernel's accounting when it was reaped."""

    def __init__(self, home: CorpusHome) -> None:
        self.home = home
        self.last_peak: int | None = None

    def __call__(self, args: Sequence[str]) -> tuple[int, str, str, str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vultrino", *args],
            env=self.home.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        chunks: dict[str, str] = {}

        def drain(name: str, stream: IO[str]) -> None:
            with stream:
                chunks[name] = stream.read()

        readers = [
            threading.Thread(target=drain, args=("out", proc.stdout)),
            threading.Thread(target=drain, args=("err", proc.stderr)),
        ]
        for t in readers:
            t.start()
        guard = threading.Timer(HANG_GUARD_S, proc.kill)
        guard.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # reaps it, with its resource usage
        finally:
            guard.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        for t in readers:
            t.join()
        self.last_peak = usage.ru_maxrss * 1024  # KiB on Linux
        out, err = chunks.get("out", ""), chunks.get("err", "")
        crashed = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else ""
        if "Traceback (most recent call last)" in err:
            crashed = "a Python traceback on stderr"
        return proc.returncode, out, err, crashed


def cli_subprocess(home: CorpusHome) -> CliRun:
    """A real ``python -m vultrino`` process per command, on ``home``."""
    return _Subprocess(home)


_EXIT_CODES = {
    name: getattr(errors, name).exit_code
    for name in errors.__all__
    if isinstance(getattr(errors, name), type)
}


def cli_trial(home: CorpusHome, run: CliRun, guest: Guest, surface: str) -> Trial:
    """``guest`` through the CLI: ``request ... --json`` for misbehave, then for ping."""
    trial = Trial(guest.stem, surface, survived=True)
    seen = trial.outputs

    def call(*args: str) -> tuple[int, str, str]:
        code, out, err, crashed = run(args)
        seen.extend([(f"stdout of {args[:3]}", out), (f"stderr of {args[:3]}", err)])
        if crashed:
            trial.survived = False
            trial.notes.append(f"{' '.join(args[:3])}: {crashed}")
        return code, out, err

    expected = (guest.expect.refused[0],) if guest.expect.refused else guest.expect.errors
    with plugin_log() as log_lines:
        if guest.refused:
            code, out, err = call(
                "plugin", "install", "--force", str(home.sources / guest.plugin), "--json"
            )
            trial.refused = _cli_error(trial, code, out, err, expected) if code else None
        argv = ["request", guest.alias, "--action", "misbehave", "--json"]
        argv += [f"--param=pad={v}" for v in guest.misbehave_params.values()]
        started = time.perf_counter()
        code, out, err = call(*argv)
        trial.seconds = time.perf_counter() - started
        misbehave_peak = getattr(run, "last_peak", None)
        if code == 0:
            trial.result = _one_json_document(trial, out)
        else:
            trial.error = _cli_error(trial, code, out, err, expected)
        if not guest.refused:
            ping = ["request", guest.alias, "--action", "ping", f"--param=message={PING_MESSAGE}"]
            code, out, _ = call(*ping, "--json")
            ping_peak = getattr(run, "last_peak", None)
            if misbehave_peak is not None and ping_peak is not None:
                trial.host_growth_mib = max(0, misbehave_peak - ping_peak) / MIB
            pong = _one_json_document(trial, out) if code == 0 else None
            trial.usable = code == 0 and pong == guest.pong
            if not trial.usable:
                trial.notes.append(f"ping exited {code} with {out!r:.300}")
    seen.append(("plugin log", "\n".join(log_lines)))
    return trial


def _one_json_document(trial: Trial, out: str) -> Any:
    """stdout must be exactly one JSON document: nothing a guest wrote may be mixed in."""
    try:
        return json.loads(out)
    except ValueError:
        trial.notes.append(f"stdout is not one JSON document: {out!r:.300}")
        return None


def _cli_error(
    trial: Trial, code: int, out: str, err: str, expected: tuple[str, ...]
) -> tuple[str, str]:
    """The error class and message of a failed command.

    With ``--json`` stdout should carry ``{"error": {"type", "message"}}``; when it is empty,
    the message is taken from stderr's ``error:`` line and the exit code must be one the
    expected classes document. (:func:`json_error_document` checks the JSON form itself.)
    """
    message = "\n".join(
        line.removeprefix("error: ") for line in err.splitlines() if line.startswith("error: ")
    )
    if not message:
        trial.notes.append(f"exit code {code} without an 'error:' line on stderr: {err!r:.300}")
    if not out.strip():
        if code not in {_EXIT_CODES.get(c) for c in expected}:
            trial.notes.append(f"exit code {code} is not the one {'/'.join(expected)} documents")
        return "", message
    doc = _one_json_document(trial, out)
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        trial.notes.append(f"exit code {code} with something else on stdout: {out!r:.300}")
        return "", message
    cls = str(error.get("type", ""))
    if _EXIT_CODES.get(cls) != code:
        trial.notes.append(f"{cls} exited with {code}, not its documented {_EXIT_CODES.get(cls)}")
    return cls, str(error.get("message", ""))


def json_error_document(run: CliRun, alias: str) -> tuple[int, str, str]:
    """A failing ``request --json``: exit code, stdout, stderr (stdout should be one JSON
    ``{"error": ...}`` document, per docs/cli.md)."""
    code, out, err, _ = run(["request", alias, "--action", "misbehave", "--json"])
    return code, out, err


# --- MCP ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def mcp_server(home: CorpusHome, errlog: IO[str]) -> Iterator[Any]:
    """A real ``python -m vultrino mcp`` on ``home``, after the MCP handshake."""
    from tests.e2e.mcp_helpers import McpHome, RawClient

    client = RawClient(McpHome(home.root, home.password_file, home.secrets), errlog)
    try:
        client.handshake("2025-06-18")
        yield client
    finally:
        client.close()


def mcp_trial(home: CorpusHome, client: Any, errlog: IO[str], guest: Guest) -> Trial:
    """``guest`` through a running MCP server: its misbehave tool, then its ping tool."""
    trial = Trial(guest.stem, "mcp")
    seen = trial.outputs
    errlog.flush()
    log_start = errlog.seek(0, os.SEEK_END)
    listed = {t["name"] for t in client.request("tools/list")["result"]["tools"]}
    if guest.refused:
        # The module was copied in by hand: the server loads it lazily, so the tool may be
        # listed; calling it must fail cleanly, naming the plugin.
        trial.refused = ("", "")
    elif f"{guest.tool}_misbehave" not in listed:
        trial.notes.append(f"{guest.tool}_misbehave is not in tools/list")
    started = time.perf_counter()
    calls = MAX_GROWTH_CALLS if guest.expect.grows else 1
    peak = PeakMemory(client.proc.pid).__enter__()
    for _ in range(calls):
        answer = _call_tool(client, f"{guest.tool}_misbehave", guest.alias, guest.misbehave_params)
        seen.append(("misbehave answer", answer))
        if "error" in answer:  # a JSON-RPC error, not a tool result
            trial.error = ("", json.dumps(answer["error"]))
            break
        result = answer["result"]
        text = "".join(c.get("text", "") for c in result.get("content", []))
        if result.get("isError"):
            trial.error = ("", text)
            break
        trial.result = result.get("structuredContent", text)
        if isinstance(trial.result, dict) and set(trial.result) == {"result"}:
            trial.result = trial.result["result"]  # lists are wrapped on this protocol version
        if guest.expect.grows:
            trial.sizes.append(len(base64.b64decode(json.loads(text))))
    trial.seconds = time.perf_counter() - started
    peak.__exit__()
    trial.host_growth_mib = peak.growth_mib
    if guest.refused:
        trial.refused = trial.error or ("", "the hand-copied module answered")
        trial.error = None
    else:
        answer = _call_tool(client, f"{guest.tool}_ping", guest.alias, PING_PARAMS)
        seen.append(("ping answer", answer))
        result = answer.get("result", {})
        pong = result.get("structuredContent")
        if pong is None:
            pong = "".join(c.get("text", "") for c in result.get("content", []))
        trial.usable = not result.get("isError") and pong == guest.pong
        if not trial.usable:
            trial.notes.append(f"ping answered {answer!r:.300}")
    trial.survived = client.proc.poll() is None
    if not trial.survived:
        trial.notes.append(f"the server exited with {client.proc.returncode}")
    errlog.flush()
    errlog.seek(log_start)
    seen.append(("server stderr", errlog.read()))
    return trial


def _call_tool(client: Any, name: str, alias: str, params: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = client.request(
        "tools/call", {"name": name, "arguments": {"credential": alias, **params}}
    )
    return answer


def stdout_problems(client: Any) -> list[str]:
    """Every line the server wrote to stdout must be a JSON-RPC message it meant to send."""
    problems = []
    for line in client.lines:
        try:
            msg = json.loads(line)
        except ValueError:
            problems.append(f"not JSON on the MCP channel: {line[:200]!r}")
            continue
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
            problems.append(f"not JSON-RPC on the MCP channel: {line[:200]!r}")
        elif "forged" in line.decode("utf-8", "replace"):
            problems.append(f"a guest's stdout reached the MCP channel: {line[:200]!r}")
    return problems


def home_leaks(home: CorpusHome) -> list[str]:
    """Secrets in any file of the home but the sealed store: audit.log, .installed.json, the
    compiled-module cache, plugin files."""
    check = LeakCheck()
    check.add(*home.secrets)
    check.scan_home(home.root)
    return check.findings
