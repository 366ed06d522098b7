"""A pre-warmed process that forks one child per CLI command, so a harness can SIGKILL real
``vultrino`` processes hundreds of times without paying for an interpreter start each time.

Run as ``python -m tests.reliability._forkserver`` from the repository root. Protocol, one JSON
object per line on stdin::

    {"args": ["plugin", "install", "--force", "DIR"], "kill_after": null, "count_file": null,
     "output": null}

The server forks; the child points fd 0 at /dev/null and fds 1-2 at ``output`` (appended; by
default /dev/null too) and runs ``vultrino.cli.app(args)`` —
the code ``python -m vultrino ARGS`` runs — then exits with the command's exit code. The server
answers ``pid <n>`` at once, then ``exit <code>`` or ``signal <n>`` when the child is gone.
:class:`ForkServer` is the client the harnesses use.

``kill_after: k`` makes the child SIGKILL itself right after its k-th filesystem mutation
(:data:`MUTATORS`, and opening a file for writing), a deterministic crash point;
``count_file`` makes it write the list of its mutations (JSON) when it exits normally, so a
harness can enumerate every crash point and name each one.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import vultrino.cli  # warm: everything the install path imports is loaded before the fork
import vultrino.core
import vultrino.plugins.install.installer
import vultrino.plugins.registry
import vultrino.runtime

_REPO = Path(__file__).resolve().parents[2]
_HANG_GUARD_S = 120.0  # a guard against a hung server, never a performance assertion

#: ``os`` functions that change the filesystem; each completed call is one crash point.
MUTATORS = ("rename", "replace", "mkdir", "rmdir", "unlink", "remove", "fsync", "symlink", "link")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _Steps:
    def __init__(self, kill_after: int | None) -> None:
        self.trace: list[str] = []
        self.kill_after = kill_after
        self.home = os.environ.get("VULTRINO_HOME", "")

    def done(self, name: str, args: tuple[Any, ...]) -> None:
        paths = [self._short(a) for a in args[:2] if isinstance(a, (str, os.PathLike))]
        self.trace.append(" ".join([name, *paths]))
        if self.kill_after is not None and len(self.trace) >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def _short(self, path: Any) -> str:
        text = os.fspath(path)
        text = text if isinstance(text, str) else text.decode(errors="replace")
        return text.replace(self.home, "$VULTRINO_HOME") if self.home else text


def _wrap(
    steps: _Steps, fn: Callable[..., Any], *, counts: Callable[..., bool], name: str = ""
) -> Any:
    name = name or getattr(fn, "__name__", "call")

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        if counts(*args, **kwargs):
            steps.done(name, args)
        return result

    return wrapper


def _writes_mode(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> bool:
    return any(c in mode for c in "wxa+")


def _writes_flags(path: Any, flags: int, *args: Any, **kwargs: Any) -> bool:
    return bool(flags & _WRITE_FLAGS)


def _always(*args: Any, **kwargs: Any) -> bool:
    return True


def _install_hooks(steps: _Steps) -> None:
    for name in MUTATORS:
        setattr(os, name, _wrap(steps, getattr(os, name), counts=_always))
    os.open = _wrap(steps, os.open, counts=_writes_flags)
    opener = _wrap(steps, builtins.open, counts=_writes_mode)
    builtins.open = opener
    io.open = opener
    # Python 3.10's pathlib calls os functions it bound when it was imported.
    accessor = getattr(pathlib, "_NormalAccessor", None)
    if accessor is not None:
        for name in MUTATORS:
            if hasattr(accessor, name):
                setattr(accessor, name, staticmethod(getattr(os, name)))
        accessor.open = staticmethod(opener)
    # The installer's atomic swap (renameat2 with RENAME_EXCHANGE, through ctypes) is one step.
    installer = vultrino.plugins.install.installer
    exchange = getattr(installer, "_exchange", None)
    if exchange is not None:
        installer._exchange = _wrap(steps, exchange, counts=_always, name="renameat2-exchange")


def _child(request: dict[str, Any]) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    out = null
    if request.get("output"):  # stdout and stderr appended to this file
        out = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    kill_after = request.get("kill_after")
    count_file = request.get("count_file")
    steps = _Steps(kill_after)
    if kill_after is not None or count_file:
        _install_hooks(steps)
    code = 0
    try:
        vultrino.cli.app(request["args"], prog_name="vultrino")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        code = 70
    if count_file:
        with io.FileIO(count_file, "w") as f:  # FileIO is not hooked: no extra step
            f.write(json.dumps(steps.trace).encode())
    os._exit(code)


class ForkServer:
    """Client of ``_forkserver.py``: real CLI processes, forked from a warm interpreter."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability._forkserver"],
            cwd=_REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(
        self,
        args: list[str],
        *,
        kill_after: int | None = None,
        count_file: str | None = None,
        output: str | None = None,
    ) -> int:
        """Fork a child running ``vultrino ARGS``; returns its pid (see ``_forkserver.py``)."""
        assert self.proc.stdin is not None
        request = {
            "args": args,
            "kill_after": kill_after,
            "count_file": count_file,
            "output": output,
        }
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return int(self._line("pid"))

    def wait(self) -> tuple[str, int]:
        """``("exit", code)`` or ``("signal", number)`` of the last child."""
        kind, _, value = self._read().partition(" ")
        return kind, int(value)

    def _line(self, kind: str) -> str:
        got, _, value = self._read().partition(" ")
        assert got == kind, f"fork server said {got} {value}"
        return value

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError("the fork server died")
        return line.strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=_HANG_GUARD_S)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def main() -> None:
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        out.write(f"pid {pid}\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            out.write(f"signal {os.WTERMSIG(status)}\n")
        else:
            out.write(f"exit {os.WEXITSTATUS(status)}\n")
        out.flush()


if __name__ == "__main__":
    main()
