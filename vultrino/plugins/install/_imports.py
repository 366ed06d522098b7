"""Which modules a Python plugin imports, found statically, so its component can import them.

componentize-py snapshots the interpreter after importing the plugin's entry module at build
time, and the component has no file system at run time: a module not imported during the build
does not exist when the plugin runs. A function-level ``import secrets`` (or a standard-library
function that imports something lazily, as ``datetime.strptime`` does with ``_strptime``)
fails then with ``ModuleNotFoundError``.

So before building, :func:`scan` reads every ``.py`` file of the plugin's sources with
:mod:`ast` and collects every module named by an ``import`` anywhere — at the top, inside
functions, under ``if``/``try`` — with relative imports resolved against the file's package.
:func:`with_lazy_dependencies` adds, for the standard-library modules found, the modules their
own functions import lazily (:data:`STDLIB_LAZY`, a curated table), and :func:`write_entry`
writes a build-time-only entry module that imports the plugin's ``app`` and then every module
found, so componentize-py bundles them (and whatever they import at their top). A module that
cannot be imported at build time (an optional dependency, a platform module) is skipped and
reported; it would fail at run time as it does at build time.

Files under ``tests``/``test`` directories, test files (``test_*.py``, ``*_test.py``), hidden
directories, ``__pycache__`` and virtual environments are not scanned.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENTRY_MODULE",
    "REPORT_FILE",
    "STDLIB_LAZY",
    "Found",
    "read_report",
    "scan",
    "with_lazy_dependencies",
    "write_entry",
]

#: The generated entry module componentize-py builds from (it re-exports ``app.Handler``).
ENTRY_MODULE = "vultrino_build_entry"
#: Where the entry module writes, at build time, the modules it could not import.
REPORT_FILE = "vultrino-build-imports.txt"
_MAX_FILE_BYTES = 2 * 1024 * 1024  # a larger .py file is generated data, not code: skipped
_MAX_FILES = 5000
_SKIP_DIRS = frozenset({"__pycache__", "tests", "test", "node_modules", "target"})

#: Standard-library modules whose functions import other modules when first called, and what
#: they import (CPython 3.12+, as componentize-py embeds it). Applied transitively.
STDLIB_LAZY: dict[str, tuple[str, ...]] = {
    "base64": ("binascii", "struct"),
    "collections": ("heapq", "copy"),
    "datetime": ("_strptime", "time", "locale", "calendar"),
    "decimal": ("numbers", "contextvars", "locale"),
    "email.utils": ("email._parseaddr", "email.charset", "datetime", "time", "random", "socket"),
    "email.message": ("email.iterators", "email.generator", "quopri", "base64", "binascii"),
    "enum": ("warnings",),
    "functools": ("weakref", "typing"),
    "hashlib": ("_md5", "_sha1", "_sha2", "_sha3", "_blake2", "warnings"),
    "hmac": ("hashlib", "warnings"),
    "ipaddress": ("re",),
    "json": ("json.decoder", "json.encoder", "json.scanner"),
    "random": ("hashlib", "time"),
    "re": ("warnings", "copyreg"),
    "secrets": ("base64", "hmac", "random", "hashlib"),
    "shlex": ("warnings",),
    "statistics": ("random", "decimal", "fractions", "collections", "bisect"),
    "time": ("_strptime",),
    "typing": ("warnings", "re"),
    "urllib.parse": ("unicodedata", "warnings", "ipaddress"),
    "uuid": ("hashlib", "random", "time", "os"),
    "warnings": ("linecache", "re"),
}


@dataclass(frozen=True)
class Found:
    """A module the sources import: ``name``, where it is first imported (``file:line``), and
    whether it is only a guess (``from x import y`` may name a submodule ``x.y`` or not)."""

    name: str
    where: str
    guess: bool = False


def scan(root: Path) -> list[Found]:
    """Every module the ``.py`` files under ``root`` import, in the order first seen."""
    found: dict[str, Found] = {}
    for path in _sources(root):
        rel = path.relative_to(root)
        try:
            tree = ast.parse(path.read_bytes(), filename=str(rel))
        except (SyntaxError, ValueError, OSError):
            continue  # componentize-py reports a broken entry module itself
        module, is_package = _module_name(rel)
        for node in ast.walk(tree):
            where = f"{rel.as_posix()}:{getattr(node, 'lineno', 0)}"
            for name, guess in _imported(node, module, is_package):
                old = found.get(name)
                if old is None or (old.guess and not guess):
                    found[name] = Found(name, where, guess)
    return list(found.values())


def with_lazy_dependencies(found: list[Found]) -> list[Found]:
    """``found`` plus, transitively, what :data:`STDLIB_LAZY` says their functions import."""
    out = {f.name: f for f in found}
    todo = list(out)
    while todo:
        name = todo.pop()
        for dep in STDLIB_LAZY.get(name, ()):
            if dep not in out:
                out[dep] = Found(dep, f"imported lazily by {name}", guess=True)
                todo.append(dep)
    return list(out.values())


def write_entry(directory: Path, entry: str, modules: list[Found]) -> Path:
    """Write the build-time entry module into ``directory``: it imports ``entry`` (whose
    ``Handler`` it re-exports) and then each of ``modules``, recording those that fail in
    :data:`REPORT_FILE` beside itself."""
    directory.mkdir(parents=True, exist_ok=True)
    names = [(m.name, m.guess) for m in modules]
    text = f'''"""Generated by Vultrino for one componentize-py build; never part of the plugin.

componentize-py keeps only the modules imported while it builds: this imports the plugin's
`{entry}` module, then every module its sources import anywhere (and what the standard library
imports lazily), so they exist when the plugin runs.
"""

import sys as _sys
import types as _types

from {entry} import Handler  # noqa: F401 - what componentize-py looks for

_MODULES = {names!r}
_failed = []


def _load(name, guess):
    if name in _sys.modules:
        return
    parent, _, leaf = name.rpartition(".")
    if guess and parent:
        # `from x import y`: y is a submodule only if x is a package without such an attribute
        owner = _sys.modules.get(parent)
        if owner is None or not hasattr(owner, "__path__"):
            return
        if not isinstance(getattr(owner, leaf, _types), _types.ModuleType):
            return
    try:
        __import__(name)
    except BaseException as exc:  # noqa: BLE001 - an optional import may fail; it is reported
        if not guess:
            _failed.append(name + "\\t" + type(exc).__name__ + ": " + str(exc)[:300])


for _name, _guess in _MODULES:
    _load(_name, _guess)

try:
    with open(__file__.rpartition("/")[0] + "/{REPORT_FILE}", "w") as _report:
        _report.write("\\n".join(_failed))
except OSError:
    pass
'''
    path = directory / f"{ENTRY_MODULE}.py"
    path.write_text(text, encoding="utf-8")
    return path


def read_report(directory: Path) -> dict[str, str]:
    """What the entry module could not import at build time: module name -> the error."""
    try:
        text = (directory / REPORT_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, _, why = line.partition("\t")
        if name:
            out[name] = why
    return out


def _sources(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".")
            and d not in _SKIP_DIRS
            and not (here / d / "pyvenv.cfg").exists()
            and not (here / d).is_symlink()
        )
        for name in sorted(filenames):
            if not name.endswith(".py") or name.startswith("test_") or name.endswith("_test.py"):
                continue
            path = here / name
            try:
                if path.is_symlink() or path.stat().st_size > _MAX_FILE_BYTES:
                    continue
            except OSError:
                continue
            out.append(path)
            if len(out) >= _MAX_FILES:
                return out
    return out


def _module_name(rel: Path) -> tuple[str, bool]:
    """The dotted module name of a file at ``rel`` under the source root, and whether it is a
    package's ``__init__``."""
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _imported(node: ast.AST, module: str, is_package: bool) -> list[tuple[str, bool]]:
    """The modules one node imports, each with whether it is only a guess."""
    if isinstance(node, ast.Import):
        return [(alias.name, False) for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        if not package and not node.module:
            return []
        base = ".".join(p for p in (package, node.module) if p)
    else:
        base = node.module or ""
    if not base:
        return []
    out = [(base, False)]
    out += [(f"{base}.{alias.name}", True) for alias in node.names if alias.name != "*"]
    return out
