"""An installed module is checked against the size and sha256 its ``.installed.json`` recorded:
at every load (the registry marks the plugin broken), and again when the module is read for its
first call (a change between the two is refused, not run)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.unit.test_registry import ECHO_WAT, write_plugin
from vultrino.errors import ModuleError
from vultrino.plugins.base import CredentialView
from vultrino.plugins.registry import PluginRegistry, module_problem
from vultrino.runtime import WasmRuntime

CRED = CredentialView(alias="a", type="key", fields={"secret": "s3cr3t-value-1234"})


def installed(plugins: Path, name: str = "echo") -> Path:
    """A plugin directory with the metadata the installer writes (size and sha256)."""
    d = write_plugin(plugins, name, wat=ECHO_WAT)
    wasm = (d / "guest.wasm").read_bytes()
    meta = {"name": name, "sha256": hashlib.sha256(wasm).hexdigest(), "size": len(wasm)}
    (d / ".installed.json").write_text(json.dumps(meta))
    return d


@pytest.fixture
def runtime(tmp_path: Path) -> WasmRuntime:
    return WasmRuntime(cache_dir=tmp_path / "cache")


def test_an_intact_module_loads_and_runs(tmp_path: Path, runtime: WasmRuntime) -> None:
    installed(tmp_path / "plugins")
    with PluginRegistry(tmp_path / "plugins", runtime) as reg:
        reg.load_all()
        assert reg.broken() == {}
        assert reg.get("echo").execute("echo", {"message": "hi"}, CRED).value is not None


def test_a_module_changed_before_loading_makes_the_plugin_broken(
    tmp_path: Path, runtime: WasmRuntime
) -> None:
    d = installed(tmp_path / "plugins")
    data = bytearray((d / "guest.wasm").read_bytes())
    data[-1] ^= 0x01
    (d / "guest.wasm").write_bytes(bytes(data))
    with PluginRegistry(tmp_path / "plugins", runtime) as reg:
        reg.load_all()
        reason = reg.broken()["echo"]
    assert "changed after it was installed" in reason and "reinstall" in reason


def test_a_module_changed_after_loading_is_refused_at_its_first_call(
    tmp_path: Path, runtime: WasmRuntime
) -> None:
    d = installed(tmp_path / "plugins")
    with PluginRegistry(tmp_path / "plugins", runtime) as reg:
        reg.load_all()
        plugin = reg.get("echo")
        (d / "guest.wasm").write_bytes((d / "guest.wasm").read_bytes() + b"\x00")
        with pytest.raises(ModuleError, match="changed after it was installed"):
            plugin.execute("echo", {"message": "hi"}, CRED)


def test_metadata_problems(tmp_path: Path) -> None:
    d = installed(tmp_path / "plugins")
    module = d / "guest.wasm"
    assert module_problem(d, module)[0] is None
    (d / ".installed.json").write_text("{not json")
    problem, _ = module_problem(d, module)
    assert problem is not None and ".installed.json cannot be read" in problem
    (d / ".installed.json").unlink()
    assert module_problem(d, module) == (None, None)  # copied in by hand: nothing to compare
