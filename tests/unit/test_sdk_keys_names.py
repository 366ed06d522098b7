"""Both guest SDKs offer every function of the ``keys`` interface of the current world, and
the Rust SDK imports them from the current version's interface (a module must not mix the
versions of one world)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from vultrino.runtime import wit

ROOT = Path(__file__).resolve().parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def test_the_rust_sdk_links_every_keys_function_from_the_current_world() -> None:
    source = (ROOT / "sdk" / "rust" / "vultrino-pdk" / "src" / "keys.rs").read_text()
    modules = set(re.findall(r'wasm_import_module = "([^"]+)"', source))
    assert modules == {wit.KEYS}
    linked = set(re.findall(r'#\[link_name = "([a-z0-9-]+)"\]', source))
    # a function whose Rust name is its WIT name needs no link_name (sha256, ...)
    plain = {n for n in wit.KEYS_FUNCTIONS if "-" not in n}
    assert linked | plain == set(wit.KEYS_FUNCTIONS)
    for name in wit.KEYS_FUNCTIONS:
        assert re.search(rf"\b{name.replace('-', '_')}\b", source), name
    assert "OpenPgp = 4" in source  # the key-format case of 1.3.0, by its index
    lib = (ROOT / "sdk" / "rust" / "vultrino-pdk" / "src" / "lib.rs").read_text()
    versions = set(re.findall(r"vultrino:plugin/(?:handler|host)@([0-9.]+)", lib))
    assert versions == {wit.VERSION}


def test_the_python_sdk_wraps_every_keys_function() -> None:
    source = (ROOT / "sdk" / "python" / "vultrino_pdk" / "keys.py").read_text()
    exported = set(re.findall(r'^    "([a-z0-9_]+)",$', source, re.M))
    assert {n.replace("-", "_") for n in wit.KEYS_FUNCTIONS} <= exported
    for fmt in wit.KEY_FORMATS:
        assert f'"{fmt}": _host.KeyFormat.{fmt.upper()}' in source


def test_the_gpg_wrapper_console_script() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = config["project"]["scripts"]["vultrino-gpg-wrapper"]
    assert target == "vultrino.cli.gpg:main"
    from vultrino.cli import gpg

    assert callable(gpg.main)
