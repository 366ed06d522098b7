"""The sandbox a plugin build runs in: bubblewrap, without the homes and without a network.

Building runs the plugin source's own code (a crate's ``build.rs`` and procedural macros,
componentize-py importing ``app.py``). Outside a sandbox that code runs with the user's rights
and can read ``$VULTRINO_HOME/credentials.enc``, a password file, SSH keys. So both builders
(:mod:`._cargo`, :mod:`._componentize`) hand their command to :func:`prepare`, which wraps it in
``bwrap``:

* every namespace unshared (``--unshare-all``: no network, only a loopback that leads nowhere;
  own PIDs, IPC, hostname), ``--die-with-parent``, ``--new-session``;
* the system read-only: ``/usr`` and the ``/bin``, ``/lib*`` links, a few files of ``/etc``
  (the dynamic linker's cache, ``alternatives``, ``passwd``/``group``), a fresh ``/tmp``, a
  minimal ``/dev`` and ``/proc``;
* the toolchain read-only, as the builder names it: the directories its executables resolve
  to, the Rust sysroot, cargo's configuration and crate sources, the Python installation that
  runs componentize-py, the WIT file and guest SDK;
* writable: only the build's directory (the private copy of the source, its target and output
  directories), inside the installer's staging area;
* never ``$HOME`` or the Vultrino home, not even read-only: a path that would show either (one
  that contains them) is left out, and ``HOME`` inside points at an empty directory.

Where bubblewrap is missing or cannot create its namespaces (some containers forbid user
namespaces), the ``auto`` mode says so through the build's output and builds without a sandbox,
as before; ``require`` refuses instead; ``off`` never tries. Whether bubblewrap works is asked
once per executable (``bwrap --unshare-all ... true``) and remembered.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from vultrino.config import BUILD_SANDBOX_MODES
from vultrino.errors import InstallError

__all__ = [
    "DEFAULT_MODE",
    "ENV_BWRAP",
    "INSTALL_HINT",
    "MODES",
    "Prepared",
    "bwrap_executable",
    "check_mode",
    "prepare",
    "unavailable_reason",
]

#: ``auto``: sandbox when bubblewrap works, else warn and build without; ``require``: refuse
#: to build without it; ``off``: never sandbox.
MODES = BUILD_SANDBOX_MODES
DEFAULT_MODE = "auto"
#: Names the bwrap executable (default: ``bwrap`` on ``PATH``); read here, never passed on.
ENV_BWRAP = "VULTRINO_BWRAP"
INSTALL_HINT = (
    "install bubblewrap (`apt-get install bubblewrap`, `dnf install bubblewrap`, "
    "`pacman -S bubblewrap`) and allow unprivileged user namespaces"
)
#: The sandbox's own /tmp (a fresh tmpfs, seen by nothing else), and where ``HOME`` points
#: inside it: an empty directory there.
SANDBOX_TMP = "/tmp"  # noqa: S108 - a private tmpfs, not the shared /tmp
SANDBOX_HOME = f"{SANDBOX_TMP}/home"

_SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ETC = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
)
# Variables that would point the build back at the user's own directories.
_DROPPED_ENV = ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR")


@dataclass(frozen=True)
class Prepared:
    """The command and environment to run, and whether they are sandboxed."""

    cmd: list[str]
    env: dict[str, str]
    sandboxed: bool


def check_mode(mode: str, *, where: str = "build sandbox") -> str:
    """``mode`` if it is one of :data:`MODES`, else :class:`InstallError` naming ``where``."""
    if mode not in MODES:
        raise InstallError(f"{where}: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return mode


def bwrap_executable() -> str | None:
    """``$VULTRINO_BWRAP`` or ``bwrap`` on ``PATH``; None when there is none."""
    override = os.environ.get(ENV_BWRAP)
    if override:
        return override if os.access(override, os.X_OK) else None
    return shutil.which("bwrap")


def unavailable_reason() -> str | None:
    """Why builds cannot be sandboxed here, or None when bubblewrap works."""
    bwrap = bwrap_executable()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    return _probe(bwrap)


@functools.lru_cache(maxsize=8)
def _probe(bwrap: str) -> str | None:
    """Run the smallest sandbox with every namespace unshared; None when it works."""
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "true"]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} cannot be run ({exc})"
    if proc.returncode == 0:
        return None
    said = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return f"{bwrap} cannot create its namespaces here ({said})"


def prepare(
    cmd: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    mode: str,
    read_only: Iterable[Path],
    writable: Iterable[Path],
    hidden: Iterable[Path],
    output: Callable[[str], None] | None,
    label: str,
) -> Prepared:
    """``cmd`` wrapped in bubblewrap as the module docstring describes, or unwrapped (after a
    warning to ``output``) when ``mode`` is ``auto`` and bubblewrap cannot run here.

    ``read_only`` are the toolchain's paths, ``writable`` the build's own directories,
    ``hidden`` the directories the build must never see (the Vultrino home; ``$HOME`` is always
    added). Raises :class:`InstallError` when ``mode`` is ``require`` and there is no sandbox.
    """
    check_mode(mode)
    if mode == "off":
        _say(
            output, "the build sandbox is off (--build-sandbox=off): the build can read your files"
        )
        return Prepared(list(cmd), dict(env), sandboxed=False)
    reason = unavailable_reason()
    if reason is not None:
        if mode == "require":
            raise InstallError(
                f"{label}: the build must run in a sandbox (--build-sandbox=require), but "
                f"{reason}; {INSTALL_HINT}, or pass --build-sandbox=auto to build without one"
            )
        _say(
            output,
            f"warning: the build runs without a sandbox: it can read your files, the "
            f"Vultrino home included ({reason}); {INSTALL_HINT}, or pass "
            "--build-sandbox=require to refuse such builds",
        )
        return Prepared(list(cmd), dict(env), sandboxed=False)
    bwrap = bwrap_executable()
    assert bwrap is not None
    secret = _hidden(hidden)
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
    args += ["--tmpfs", SANDBOX_TMP, "--dir", SANDBOX_HOME, "--proc", "/proc", "--dev", "/dev"]
    args += ["--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in _ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in _shareable(read_only, secret, output):
        args += ["--ro-bind", str(path), str(path)]
    for path in _shareable(writable, secret, output):
        args += ["--bind", str(path), str(path)]
    args += ["--chdir", str(cwd), "--", *cmd]
    inner = {k: v for k, v in env.items() if k not in _DROPPED_ENV}
    inner.update(HOME=SANDBOX_HOME, TMPDIR=SANDBOX_TMP)
    _say(output, "building in a sandbox: no network, no home directory, the toolchain read-only")
    return Prepared(args, inner, sandboxed=True)


def _hidden(hidden: Iterable[Path]) -> list[Path]:
    paths = [*hidden]
    home = os.environ.get("HOME")
    if home:
        paths.append(Path(home))
    return [Path(os.path.realpath(p)) for p in paths]


def _shareable(
    paths: Iterable[Path], hidden: list[Path], output: Callable[[str], None] | None
) -> list[Path]:
    """The existing ``paths``, real and without repeats, leaving out any that would show a
    hidden directory (one that is, or contains, the home)."""
    kept: list[Path] = []
    for raw in paths:
        path = Path(os.path.realpath(raw))
        if not path.exists() or path in kept or path == Path("/"):
            continue
        if any(h == path or h.is_relative_to(path) for h in hidden):
            _say(output, f"not shared with the build sandbox: {path} (it holds your home)")
            continue
        kept.append(path)
    return kept


def _say(output: Callable[[str], None] | None, message: str) -> None:
    if output is not None:
        output(f"vultrino: {message}")
