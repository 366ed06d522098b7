"""Where the files Vultrino ships live: the guest SDKs, the templates, the WIT world and the
first-party plugins.

A source checkout (an editable install) has them at the top of the repository (``sdk/``,
``sdk-rust-template/``, ``sdk-python-template/``, ``wit/``, ``plugins/<name>/``); a wheel
carries the same files inside the package (``[tool.hatch.build.targets.wheel.force-include]`` in
pyproject.toml): the authoring files under ``vultrino/_data/``, each first-party plugin's
``plugin.toml`` and prebuilt module under ``vultrino/_plugins/<name>/``. :func:`shipped` and
:func:`first_party` look in both, checkout first, so every caller finds the one copy.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "FIRST_PARTY",
    "PYTHON_PDK",
    "RUST_PDK",
    "WIT",
    "bundled_provider",
    "first_party",
    "shipped",
]

_PACKAGE = Path(__file__).resolve().parents[2]  # .../vultrino

#: The Rust guest SDK crate (a directory with ``Cargo.toml``).
RUST_PDK = "sdk/rust/vultrino-pdk"
#: The directory that holds the Python guest SDK package ``vultrino_pdk``.
PYTHON_PDK = "sdk/python"
#: The plugin world.
WIT = "wit/vultrino-plugin.wit"
#: The first-party plugins that ship prebuilt (Rust, in the Cargo workspace). ``aws-sigv4`` is
#: first-party too, but ships as Python source only and is built on install.
FIRST_PARTY = ("ecdsa", "github", "hmac", "jwt", "pgp", "totp")


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


def first_party(name: str) -> Path | None:
    """The directory of the first-party plugin ``name`` (its ``plugin.toml`` beside its prebuilt
    module): the checkout's ``plugins/<name>``, else the wheel's ``vultrino/_plugins/<name>``;
    None for a name not in :data:`FIRST_PARTY` or when neither copy is there."""
    if name not in FIRST_PARTY:
        return None
    for candidate in (_PACKAGE.parent / "plugins" / name, _PACKAGE / "_plugins" / name):
        if (candidate / "plugin.toml").is_file():
            return candidate
    return None


def bundled_provider(type_str: str) -> tuple[str, str] | None:
    """The first-party plugin that defines credential type ``type_str`` (a bare type name such
    as ``totp``, or ``plugin:<plugin>:<type>``) and that type written in full, or None. Reads
    the shipped manifests, so it costs a few file reads: for error messages only."""
    from vultrino.errors import VultrinoError
    from vultrino.plugins.base import PLUGIN_TYPE_PREFIX, qualified_type
    from vultrino.plugins.manifest import load_manifest

    wanted_plugin: str | None = None
    short = type_str
    if type_str.startswith(PLUGIN_TYPE_PREFIX):
        wanted_plugin, _, short = type_str[len(PLUGIN_TYPE_PREFIX) :].partition(":")
    for name in FIRST_PARTY:
        if wanted_plugin is not None and name != wanted_plugin:
            continue
        directory = first_party(name)
        if directory is None:
            continue
        try:
            manifest = load_manifest(directory / "plugin.toml")
        except VultrinoError:
            continue
        if manifest.credential_type(short) is not None:
            return name, qualified_type(name, short)
    return None
