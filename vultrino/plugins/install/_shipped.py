"""Where the files Vultrino ships for plugin authors live: the guest SDKs, the templates and the
WIT world.

A source checkout (an editable install) has them at the top of the repository (``sdk/``,
``sdk-rust-template/``, ``sdk-python-template/``, ``wit/``); a wheel carries the same tree under
``vultrino/_data/`` (``[tool.hatch.build.targets.wheel.force-include]`` in pyproject.toml).
:func:`shipped` looks in both, checkout first, so every caller finds the one copy.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PYTHON_PDK", "RUST_PDK", "WIT", "shipped"]

_PACKAGE = Path(__file__).resolve().parents[2]  # .../vultrino

#: The Rust guest SDK crate (a directory with ``Cargo.toml``).
RUST_PDK = "sdk/rust/vultrino-pdk"
#: The directory that holds the Python guest SDK package ``vultrino_pdk``.
PYTHON_PDK = "sdk/python"
#: The plugin world.
WIT = "wit/vultrino-plugin.wit"


def shipped(relpath: str, marker: str | None = None) -> Path | None:
    """``relpath`` in the checkout, else in the wheel's ``_data/``; None when neither has it.

    With ``marker``, ``relpath`` is a directory that counts only if it holds that file;
    without, ``relpath`` must be a file.
    """
    for base in (_PACKAGE.parent, _PACKAGE / "_data"):
        candidate = base / relpath
        if (candidate / marker).is_file() if marker else candidate.is_file():
            return candidate
    return None
