"""What every plugin build shares: the environment it runs with and the streaming of its output.

Both builders (:mod:`._cargo` for Rust, :mod:`._componentize` for Python) run the plugin's own
code with the user's rights, so neither hands it a ``VULTRINO_*`` variable
(``VULTRINO_PASSWORD`` would give the store's password to a crate's build script).
"""

from __future__ import annotations

import os
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path

__all__ = ["build_environment", "run_streamed"]


#: Variables a build may see: what the toolchains need to run, nothing that is a credential.
_BUILD_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "SOURCE_DATE_EPOCH",
        "CC",
        "CXX",
        "AR",
        "CFLAGS",
        "CXXFLAGS",
        "LDFLAGS",
    }
)
_BUILD_PREFIXES = ("LC_", "RUST", "CARGO_")
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "KEY")


def build_environment(**extra: str) -> dict[str, str]:
    """The environment a build runs in: only the variables the toolchains need (``PATH``,
    locale, ``RUST*``, ``CARGO_*`` and compiler settings) from this process's, never one whose
    name says it holds a secret (``CARGO_REGISTRY_TOKEN``, ...) nor any ``VULTRINO_*``; plus
    ``extra``. A build script can thus not read the user's other credentials from it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if (k in _BUILD_NAMES or k.startswith(_BUILD_PREFIXES))
        and not any(w in k.upper() for w in _SECRET_WORDS)
    }
    env.update(extra)
    return env


def run_streamed(
    cmd: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    output: Callable[[str], None] | None,
    tail_lines: int,
) -> tuple[int, list[str]]:
    """Run ``cmd`` with stdin closed, passing each line of its merged stdout/stderr to
    ``output`` as it comes; return its exit code and its last ``tail_lines`` lines.

    Raises :class:`OSError` when the command cannot be started (the caller says why)."""
    tail: deque[str] = deque(maxlen=tail_lines)
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            if output is not None:
                output(line)
    finally:
        proc.stdout.close()
        code = proc.wait()
    return code, list(tail)
