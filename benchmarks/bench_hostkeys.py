"""Keys that stay in the host: what the ``keys`` interface costs an action.

The same HMAC ``sign`` action two ways, through the plugin layer (``WasmPlugin.execute``, what
the pipeline's run stage calls): the shipped ``hmac`` plugin, whose key is ``access = "host"``
(the guest asks the host for the MAC), against the same plugin as it was before (0.1.0,
``benchmarks/guests/vultrino_hmac_guest_key.wasm``, built from this repository's
``plugins/hmac`` before the move), which receives the key and computes the MAC itself. Both
run in the same process on the same runtime, in alternating pairs; the figure is the median
ratio of the pairs (the machine may be shared: a ratio of paired runs drifts far less than
either absolute figure), next to each side's median CPU time per call.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GUESTS = Path(__file__).resolve().parent / "guests"


def _plugin(directory: Path, runtime: Any) -> Any:
    from vultrino.plugins.manifest import load_manifest
    from vultrino.plugins.wasm import WasmPlugin

    return WasmPlugin(directory, load_manifest(directory / "plugin.toml"), runtime)


def measure_pairs(
    host_run: Any, guest_run: Any, params: dict[str, Any], pairs: int, calls: int
) -> tuple[list[float], list[float], list[float]]:
    """CPU seconds per call of each side, and their ratios, over ``pairs`` alternating pairs
    of ``calls`` calls (both warmed first; both must give the same answer)."""
    assert host_run(dict(params)).value == guest_run(dict(params)).value  # same answer

    def batch(fn: Any) -> float:
        # CPU time of this process: on a shared machine, time spent waiting for a core
        # would otherwise land on whichever side was running
        t = time.process_time()
        for _ in range(calls):
            fn(dict(params))
        return (time.process_time() - t) / calls

    for _ in range(3):  # warm both
        batch(host_run)
        batch(guest_run)
    host_t, guest_t, ratios = [], [], []
    for i in range(pairs):
        if i % 2 == 0:
            g, h = batch(guest_run), batch(host_run)
        else:
            h, g = batch(host_run), batch(guest_run)
        host_t.append(h)
        guest_t.append(g)
        ratios.append(h / g)
    return host_t, guest_t, ratios


def run(res: Any, smoke: bool) -> None:
    from vultrino.plugins.base import CredentialView
    from vultrino.runtime import WasmRuntime

    pairs = 5 if smoke else 41
    calls = 50 if smoke else 500
    with tempfile.TemporaryDirectory() as tmp, WasmRuntime("wasmtime") as runtime:
        old = Path(tmp, "hmac-guest-key")
        old.mkdir()
        shutil.copy(GUESTS / "hmac_guest_key.toml", old / "plugin.toml")
        shutil.copy(GUESTS / "vultrino_hmac_guest_key.wasm", old / "vultrino_hmac.wasm")
        host_key = _plugin(ROOT / "plugins" / "hmac", runtime)
        guest_key = _plugin(old, runtime)
        view = CredentialView(
            "bench", "hmac_key", {"key": "bench-webhook-key-0123456789", "encoding": "utf8"}
        )
        params = {"message": "x" * 100, "algorithm": "sha256"}
        host_run = host_key.prepare("sign", view)
        guest_run = guest_key.prepare("sign", view)
        host_t, guest_t, ratios = measure_pairs(host_run, guest_run, params, pairs, calls)
        host_key.close()
        guest_key.close()
    res.add(
        "hostkeys: hmac sign, key in the host (per call)",
        statistics.median(host_t) * 1e6,
        "µs",
        note='CPU time; shipped plugins/hmac (access = "host"), through WasmPlugin',
    )
    res.add(
        "hostkeys: hmac sign, key in the guest (per call)",
        statistics.median(guest_t) * 1e6,
        "µs",
        note="CPU time; plugins/hmac 0.1.0 as it was (the key in the request)",
    )
    res.add(
        "hostkeys: host-key / guest-key hmac sign",
        statistics.median(ratios),
        "x",
        goal=1.2,
        note=f"median of {pairs} alternating pairs of {calls} calls",
    )
