"""The ``ecdsa`` plugin's ``sign`` against its floor: coincurve called directly from Python plus
the bare cost of a plugin call.

Three things measured in the same process, in rotating order, in CPU time (the machine may be
shared; a ratio of interleaved batches drifts far less than any absolute figure):

* the shipped ``plugins/ecdsa`` ``sign`` action (100 bytes of hex data, ``hash`` keccak256)
  through the plugin layer (``WasmPlugin``, what the pipeline's run stage calls), its key
  ``access = "host"``: the guest asks the host for the Keccak-256, then for the signature;
* the same work in Python alone: pycryptodome's Keccak-256 of the data and coincurve's
  ``sign_recoverable`` of the digest with a ready ``PrivateKey`` (the host keeps its decoded
  key the same way);
* a bare plugin call: the benchmarks' ABI 2 echo guest, with the same credential and params,
  through the same ``WasmPlugin`` path.

The figure is the median over the rounds of plugin / (coincurve + bare call); the goal is 2x.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GUESTS = Path(__file__).resolve().parent / "guests"
KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"

ECHO_MANIFEST = """\
[plugin]
name = "echo"
version = "1.0.0"
wasm_module = "echo.wasm"

[[credential_types]]
name = "ecdsa_key"

[[credential_types.fields]]
name = "private_key"
type = "password"
required = true
access = "host"

[[actions]]
name = "sign"

[[actions.parameters]]
name = "data"
type = "string"
required = true

[[actions.parameters]]
name = "hash"
type = "string"
"""


def _plugin(directory: Path, runtime: Any) -> Any:
    from vultrino.plugins.manifest import load_manifest
    from vultrino.plugins.wasm import WasmPlugin

    return WasmPlugin(directory, load_manifest(directory / "plugin.toml"), runtime)


def run(res: Any, smoke: bool) -> None:
    import wasmtime
    from coincurve import PrivateKey
    from Crypto.Hash import keccak

    from vultrino.plugins.base import CredentialView
    from vultrino.runtime import WasmRuntime

    rounds = 5 if smoke else 41
    calls = 50 if smoke else 400
    data = bytes(range(100))
    params = {"data": data.hex(), "hash": "keccak256"}
    with tempfile.TemporaryDirectory() as tmp, WasmRuntime("wasmtime") as runtime:
        echo_dir = Path(tmp, "echo")
        echo_dir.mkdir()
        (echo_dir / "plugin.toml").write_text(ECHO_MANIFEST)
        (echo_dir / "echo.wasm").write_bytes(
            bytes(wasmtime.wat2wasm((GUESTS / "abi2_echo.wat").read_text()))
        )
        ecdsa = _plugin(ROOT / "plugins" / "ecdsa", runtime)
        echo = _plugin(echo_dir, runtime)
        view = CredentialView("bench", "ecdsa_key", {"private_key": KEY})
        sign = ecdsa.prepare("sign", view)
        bare = echo.prepare("sign", view)
        key = PrivateKey(bytes.fromhex(KEY[2:]))

        def direct(p: dict[str, Any]) -> bytes:
            digest = keccak.new(data=bytes.fromhex(p["data"]), digest_bits=256).digest()
            return bytes(key.sign_recoverable(digest, hasher=None))

        # the same signature both ways (RFC 6979): the plugin does no more and no less
        ours = sign(dict(params)).value
        assert ours["signature"][2:130] == direct(params)[:64].hex(), ours

        def batch(fn: Any) -> float:
            t = time.process_time()
            for _ in range(calls):
                fn(dict(params))
            return (time.process_time() - t) / calls

        sides = {"plugin": sign, "coincurve": direct, "bare": bare}
        for _ in range(3):  # warm all three
            for fn in sides.values():
                batch(fn)
        times: dict[str, list[float]] = {name: [] for name in sides}
        ratios = []
        order = list(sides)
        for i in range(rounds):
            got = {}
            for name in order[i % 3 :] + order[: i % 3]:  # rotate who goes first
                got[name] = batch(sides[name])
            for name, value in got.items():
                times[name].append(value)
            ratios.append(got["plugin"] / (got["coincurve"] + got["bare"]))
        ecdsa.close()
        echo.close()
    med = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    res.add(
        "ecdsa: sign, keccak256 of 100 B (per call)",
        med["plugin"],
        "µs",
        note='CPU time; shipped plugins/ecdsa (access = "host"), through WasmPlugin',
    )
    res.add(
        "ecdsa: coincurve + pycryptodome from Python (per call)",
        med["coincurve"],
        "µs",
        note="the same Keccak-256 and sign_recoverable, no plugin",
    )
    res.add(
        "ecdsa: bare plugin call, same params (per call)",
        med["bare"],
        "µs",
        note="the ABI 2 echo guest through WasmPlugin",
    )
    res.add(
        "ecdsa: sign / (coincurve + bare call)",
        statistics.median(ratios),
        "x",
        goal=2.0,
        note=f"median of {rounds} rotating rounds of {calls} calls",
    )
