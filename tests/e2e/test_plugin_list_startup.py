"""`vultrino plugin list` in a real process: the same output with and without the manifest
cache, and none of the heavy third-party modules (engine, HTTP client, crypto) imported."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.unit.test_registry import write_plugin
from vultrino.cli import COMMANDS, _LazyCommands
from vultrino.plugins._manifest_cache import CACHE_FILE

HEAVY = ("wasmtime", "wasmer", "httpx", "nacl", "msgpack", "mcp", "rich", "idna")

PROBE = """
import runpy, sys
sys.argv = ["vultrino", *sys.argv[1:]]
try:
    runpy.run_module("vultrino", run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    for i in range(3):
        d = write_plugin(home / "plugins", f"p{i}", tools=(f"tool_{i}",))
        wasm = (d / "guest.wasm").read_bytes()
        meta = {"name": d.name, "sha256": hashlib.sha256(wasm).hexdigest(), "size": len(wasm)}
        (d / ".installed.json").write_text(json.dumps(meta))
    return home


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    env["VULTRINO_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_json_output_is_identical_with_and_without_the_cache(tmp_path: Path) -> None:
    home = _home(tmp_path)
    cold = _run(home, "plugin", "list", "--json").stdout
    assert (home / "cache" / CACHE_FILE).is_file()
    warm = _run(home, "plugin", "list", "--json").stdout
    assert warm == cold
    rows = json.loads(warm)
    assert [r["name"] for r in rows] == ["http", "p0", "p1", "p2"]
    assert all(r["status"] == "ok" for r in rows)


def test_plugin_list_imports_no_engine_http_client_or_crypto(tmp_path: Path) -> None:
    home = _home(tmp_path)
    for _ in range(2):  # without, then with, the cache
        loaded = set(_run(home, "plugin", "list").stderr.split())
        assert "vultrino" in loaded and "typer" in loaded  # the probe saw the real run
        assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_the_lazy_command_table_matches_what_the_builders_register() -> None:
    """Every name in the table is built by its builder, and no builder registers a command
    missing from the table (which --help would then never show)."""
    import typer

    lazy = _LazyCommands(COMMANDS)
    for name, builder in COMMANDS.items():
        built = typer.main.get_group(builder()).commands
        assert name in built, name
        assert set(built) <= set(COMMANDS), set(built) - set(COMMANDS)
        assert lazy[name].name == name
