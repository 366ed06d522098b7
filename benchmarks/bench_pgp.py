"""The first-party ``pgp`` plugin: what a detached OpenPGP signature costs through the plugin.

The shipped ``plugins/pgp`` signs 1 KiB through the plugin layer (``WasmPlugin``, what the
pipeline's run stage calls) with a passphrase-protected Ed25519 key (the throwaway test key of
``tests/fixtures/pgp``, exported by gpg with its default S2K: iterated and salted SHA-1 over
about 65 MB). The reference, in the same process, in alternating pairs, is the least a native
signer does for the same packet: SHA-256 of the data and the same trailer, an Ed25519 signature
with PyNaCl, and the armor. A figure is the median of the pairs' CPU time per call (the machine
may be shared). Also measured: the first signature of a prepared action, which unlocks the key
(the S2K); later ones reuse the decoded key.
"""

from __future__ import annotations

import base64
import hashlib
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "pgp"


def run(res: Any, smoke: bool) -> None:
    from nacl.signing import SigningKey

    from vultrino.plugins.base import CredentialView
    from vultrino.plugins.manifest import load_manifest
    from vultrino.plugins.wasm import WasmPlugin
    from vultrino.runtime import WasmRuntime

    pairs = 5 if smoke else 31
    calls = 20 if smoke else 200
    fields = {
        "private_key": (FIXTURES / "ed25519-protected.asc").read_text(),
        "passphrase": "fixture passphrase",
    }
    params = {"data": "x" * 1024}
    seed = SigningKey.generate()  # the reference's key: its cost does not depend on which
    trailer = bytes(40)  # the size of the plugin's hashed part and its trailer
    with WasmRuntime("wasmtime") as runtime:
        directory = ROOT / "plugins" / "pgp"
        plugin = WasmPlugin(directory, load_manifest(directory / "plugin.toml"), runtime)
        view = CredentialView("bench", "pgp_key", fields)
        unlock = []
        for _ in range(1 if smoke else 5):
            t = time.process_time()
            first = plugin.prepare("sign", view)
            first(dict(params))
            unlock.append(time.process_time() - t)
        sign = plugin.prepare("sign", view)
        assert sign(dict(params)).value.startswith("-----BEGIN PGP SIGNATURE-----")

        def native(p: dict[str, Any]) -> str:
            digest = hashlib.sha256(p["data"].encode() + trailer).digest()
            sig = seed.sign(digest).signature
            return "-----BEGIN PGP SIGNATURE-----\n\n" + base64.b64encode(sig).decode()

        def batch(fn: Any) -> float:
            t = time.process_time()
            for _ in range(calls):
                fn(dict(params))
            return (time.process_time() - t) / calls

        for _ in range(3):
            batch(sign)
            batch(native)
        plugin_t, native_t = [], []
        for i in range(pairs):
            if i % 2 == 0:
                n, p = batch(native), batch(sign)
            else:
                p, n = batch(sign), batch(native)
            plugin_t.append(p)
            native_t.append(n)
        plugin.close()
    res.add(
        "pgp: sign 1 KiB, Ed25519, key in the host (per call)",
        statistics.median(plugin_t) * 1e6,
        "µs",
        note="CPU time; shipped plugins/pgp through WasmPlugin, the key already unlocked",
    )
    res.add(
        "pgp: the same signature natively (PyNaCl + hashlib)",
        statistics.median(native_t) * 1e6,
        "µs",
        note=f"reference; median of {pairs} alternating pairs of {calls} calls",
    )
    res.add(
        "pgp: first signature of a prepared action (unlocks the key)",
        statistics.median(unlock) * 1e3,
        "ms",
        note="gpg's default S2K (iterated SHA-1, ~65 MB) runs once per credential view",
    )
