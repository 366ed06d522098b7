"""Where in a ``plugin.toml`` a manifest problem's key path is written.

Validation reports problems by key path (``actions[1].parameters[0].type: expected ...``);
:func:`annotate` turns each into ``<file>:<line>: ...`` by reading the manifest's text the way
TOML lays out tables: ``[plugin]``, ``[[actions]]``, ``[[actions.parameters]]`` (whose index
starts again under each action), ``key = value``. A path that names no written line (a missing
key) points at the table that should hold it; one that cannot be placed is left as it was.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["annotate", "line_index", "locate"]

_HEADER = re.compile(r"^\s*(\[\[|\[)\s*([^\[\]#]+?)\s*(\]\]|\])\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*([A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*=""")
_PROBLEM = re.compile(r"^([A-Za-z0-9_.\[\]-]+): ")
_TOML_LINE = re.compile(r"^line (\d+): ")


def _parts(dotted: str) -> list[str]:
    return [p.strip().strip("\"'") for p in dotted.split(".")]


def line_index(text: str) -> dict[str, int]:
    """Key path -> the 1-based line that writes it, for every table header and key."""
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    latest: dict[str, int] = {}  # array-of-tables name -> the index of its last element
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            names = _parts(header.group(2))
            path = ""
            for depth, name in enumerate(names):
                plain = ".".join(names[: depth + 1])
                path = f"{path}.{name}" if path else name
                last = depth == len(names) - 1
                if last and header.group(1) == "[[":
                    counts[path] = counts.get(path, 0) + 1
                    latest[plain] = counts[path] - 1
                    for deeper in [k for k in latest if k.startswith(plain + ".")]:
                        del latest[deeper]
                if plain in latest:
                    path = f"{path}[{latest[plain]}]"
            current = path
            lines.setdefault(current, number)
            continue
        key = _KEY.match(line)
        if key:
            name = key.group(1).strip("\"'")
            lines.setdefault(f"{current}.{name}" if current else name, number)
    return lines


def locate(index: dict[str, int], key_path: str) -> int | None:
    """The line of ``key_path``, or of the nearest table above it that is written."""
    path = key_path
    while path:
        if path in index:
            return index[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


def annotate(manifest: Path, problems: list[str]) -> list[str]:
    """``problems`` as ``<manifest>:<line>: <problem>`` where a line can be found."""
    try:
        index = line_index(manifest.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError):
        return list(problems)
    out = []
    for problem in problems:
        toml_line = _TOML_LINE.match(problem)
        if toml_line:
            out.append(f"{manifest}:{toml_line.group(1)}: {problem[toml_line.end() :]}")
            continue
        found = _PROBLEM.match(problem)
        number = locate(index, found.group(1)) if found else None
        out.append(f"{manifest}:{number}: {problem}" if number else f"{manifest}: {problem}")
    return out
