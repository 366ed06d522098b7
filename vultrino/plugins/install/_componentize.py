"""Building a Python plugin into a WASI 0.2 component with componentize-py.

A Python plugin project (``vultrino plugin new NAME --lang python``) holds ``plugin.toml`` and
``app.py``, whose ``Handler`` class implements the ``handler`` interface of
``wit/vultrino-plugin.wit``. Building runs::

    componentize-py -d <vultrino-plugin.wit> -w plugin componentize app \
        -p <project> -p <sdk> -o <out>

with the WIT file this Vultrino ships (the host's contract, not a copy in the project) and the
guest SDK package ``vultrino_pdk`` (the MessagePack codec, dispatch, errors and logging) from
this Vultrino too, so a project holds only its own code (a module of the project with the same
name would win, as the project comes first on the path). The
build's output is streamed to the caller; the component is written into the installer's staging
directory, never next to the sources. componentize-py comes from PyPI
(``pip install componentize-py``); it is looked for next to the running Python, then on
``PATH``.

componentize-py keeps only the modules imported while it builds (the component has no file
system at run time), so the build starts from a generated entry module that imports ``app`` and
then every module the plugin's sources import anywhere, found statically, with what the
standard library imports lazily (:mod:`._imports`). A module it cannot import is named in the
build's output.

Building runs the project's code: componentize-py imports ``app`` to pre-initialise the
component (inside its own WebAssembly runtime, with the project directory readable). So the
installer builds only when asked to (``--build``), on a copy of the sources, without any
``VULTRINO_*`` variable in the build's environment (no store password reaches it), and inside
:mod:`._sandbox`: componentize-py sees the Python installation that runs it, the WIT file and
the SDK read-only, the copy and the output directory writable, and neither ``$HOME`` nor the
Vultrino home.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from vultrino.errors import InstallError
from vultrino.plugins.install import _imports, _sandbox
from vultrino.plugins.install._build import build_environment, run_streamed
from vultrino.plugins.install._shipped import PYTHON_PDK, WIT, shipped
from vultrino.runtime.wit import WORLD

__all__ = [
    "ENTRY",
    "INSTALL_HINT",
    "SDK_PACKAGE",
    "build",
    "find_sdk",
    "find_wit",
    "is_python_project",
]

#: The module componentize-py builds from (it must define ``Handler``).
ENTRY = "app"
#: The guest SDK package every build can import (``from vultrino_pdk import run``).
SDK_PACKAGE = "vultrino_pdk"
INSTALL_HINT = "install componentize-py with `pip install componentize-py`"
_TAIL_LINES = 15


def is_python_project(root: Path) -> bool:
    """A directory with ``app.py`` and no ``Cargo.toml`` is built with componentize-py."""
    return (root / f"{ENTRY}.py").is_file() and not (root / "Cargo.toml").exists()


def find_wit() -> Path:
    """The plugin world this Vultrino implements: the checkout's ``wit/``, else the wheel's."""
    found = shipped(WIT)
    if found is None:
        raise InstallError(
            "vultrino-plugin.wit is missing from this Vultrino installation; reinstall"
        )
    return found


def find_sdk() -> Path:
    """The directory holding the Python guest SDK package ``vultrino_pdk``."""
    found = shipped(PYTHON_PDK, marker=f"{SDK_PACKAGE}/__init__.py")
    if found is None:
        raise InstallError(
            f"the Python plugin SDK ({SDK_PACKAGE}) is missing from this Vultrino "
            "installation; reinstall vultrino"
        )
    return found


def executable() -> str:
    """componentize-py next to the running Python (a virtualenv's bin/), else on ``PATH``."""
    here = Path(sys.executable).parent / "componentize-py"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("componentize-py")
    if found is None:
        raise InstallError(
            f"the plugin is written in Python and must be built, but componentize-py is not "
            f"installed; {INSTALL_HINT}"
        )
    return found


def build(
    project: Path,
    *,
    out: Path,
    output: Callable[[str], None] | None = None,
    label: str = "plugin",
    sandbox: str = _sandbox.DEFAULT_MODE,
    writable: tuple[Path, ...] = (),
    hidden: tuple[Path, ...] = (),
) -> Path:
    """Build the project in ``project`` into the component ``out``; returns ``out``.

    The build runs in :mod:`._sandbox` (``sandbox`` is its mode) seeing the Python
    installation, the WIT file and the SDK read-only, ``project``, ``out``'s directory and
    ``writable`` writable, and never ``hidden``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tool = executable()
    wit, sdk = find_wit(), find_sdk()
    # The generated entry module lives beside the output, never among the sources, and goes
    # when the build ends.
    entry_dir = Path(tempfile.mkdtemp(prefix=".vultrino-entry-", dir=out.parent))
    try:
        found = _imports.with_lazy_dependencies([*_imports.scan(project), *_imports.scan(sdk)])
        _imports.write_entry(entry_dir, ENTRY, found)
        cmd = [
            tool,
            "-d",
            str(wit),
            "-w",
            WORLD,
            "componentize",
            _imports.ENTRY_MODULE,
            "-p",
            str(project),
            "-p",
            str(sdk),
            "-p",
            str(entry_dir),
            "-o",
            str(out),
        ]
        run = _sandbox.prepare(
            cmd,
            cwd=project,
            env=build_environment(),
            mode=sandbox,
            read_only=[*_python_paths(tool), wit, sdk],
            writable=(project, out.parent, entry_dir, *writable),
            hidden=hidden,
            output=output,
            label=label,
        )
        try:
            code, tail = run_streamed(
                run.cmd, cwd=project, env=run.env, output=output, tail_lines=_TAIL_LINES
            )
        except OSError as exc:
            raise InstallError(
                f"{label}: cannot run componentize-py ({exc}); {INSTALL_HINT}"
            ) from exc
        missing = _imports.read_report(entry_dir)
    finally:
        shutil.rmtree(entry_dir, ignore_errors=True)
    if output is not None and code == 0:
        where = {f.name: f.where for f in found}
        for name, why in missing.items():
            output(
                f"vultrino: note: `import {name}` ({where.get(name, '?')}) cannot be imported "
                f"in the component ({why}); that import will fail when the plugin runs"
            )
    if code != 0 or not out.is_file():
        last = "\n  ".join(tail[-8:])
        raise InstallError(
            f"{label}: `componentize-py ... componentize {ENTRY}` failed (exit {code}):\n"
            f"  {last}\nFix the build, or install a directory that already holds the module."
        )
    return out


def _python_paths(tool: str) -> list[Path]:
    """What running ``tool`` (a console script) needs to see: the environment it lives in, the
    interpreter its ``#!`` line names and that interpreter's installation, and this Python's
    (the same ones when componentize-py sits next to the running Python)."""
    paths = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)]
    real = Path(os.path.realpath(tool))
    paths.append(real.parent.parent)
    try:
        with real.open("rb") as f:
            first = f.readline(512)
    except OSError:
        first = b""
    if first.startswith(b"#!"):
        words = first[2:].decode("utf-8", "replace").split()
        if words:
            interpreter = Path(words[0])
            paths += [interpreter.parent.parent, Path(os.path.realpath(interpreter)).parent.parent]
    return paths
