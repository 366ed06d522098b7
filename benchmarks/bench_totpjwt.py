"""totp and jwt with their secrets in the host: what the move costs each action.

The shipped ``totp`` ``code`` and ``jwt`` ``verify`` (secret ``access = "host"``: the guest asks
the host for each HMAC) against the same plugins as they were (0.1.0,
``benchmarks/guests/vultrino_{totp,jwt}_guest_key.wasm``, built from this repository's
``plugins/totp`` and ``plugins/jwt`` before the move), which decode the secret and compute the
HMAC themselves. As ``bench_hostkeys``: through ``WasmPlugin`` on one runtime, prepared
actions, alternating pairs, CPU time of this process; the figure is the median ratio of the
pairs, next to each side's median time per call.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GUESTS = Path(__file__).resolve().parent / "guests"
JWT_SECRET = "bench-jwt-signing-secret-long-enough-for-hs512-0123456789abcdefghij"


def _plugin(directory: Path, runtime: Any) -> Any:
    from vultrino.plugins.manifest import load_manifest
    from vultrino.plugins.wasm import WasmPlugin

    return WasmPlugin(directory, load_manifest(directory / "plugin.toml"), runtime)


def _token() -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "bench", "iat": 1700000000}).encode())
    mac = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def _pair(
    res: Any,
    label: str,
    host_run: Any,
    guest_run: Any,
    params: dict[str, Any],
    pairs: int,
    calls: int,
) -> None:
    from bench_hostkeys import measure_pairs

    host_t, guest_t, ratios = measure_pairs(host_run, guest_run, params, pairs, calls)
    res.add(
        f"totpjwt: {label}, secret in the host (per call)",
        statistics.median(host_t) * 1e6,
        "µs",
        note="CPU time; the shipped plugin (0.2.0), through WasmPlugin",
    )
    res.add(
        f"totpjwt: {label}, secret in the guest (per call)",
        statistics.median(guest_t) * 1e6,
        "µs",
        note="CPU time; the plugin as it was (0.1.0, the secret in the request)",
    )
    res.add(
        f"totpjwt: host-secret / guest-secret {label}",
        statistics.median(ratios),
        "x",
        goal=1.2,
        note=f"median of {pairs} alternating pairs of {calls} calls",
    )


def run(res: Any, smoke: bool) -> None:
    from vultrino.plugins.base import CredentialView
    from vultrino.runtime import WasmRuntime

    pairs = 5 if smoke else 41
    calls = 50 if smoke else 500
    with tempfile.TemporaryDirectory() as tmp, WasmRuntime("wasmtime") as runtime:
        for name, ctype, fields, action, params in (
            (
                "totp",
                "totp",
                {"secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"},
                "code",
                {"time": 1111111109},
            ),
            ("jwt", "jwt_key", {"secret": JWT_SECRET}, "verify", {"token": _token()}),
        ):
            old = Path(tmp, f"{name}-guest-key")
            old.mkdir()
            shutil.copy(GUESTS / f"{name}_guest_key.toml", old / "plugin.toml")
            shutil.copy(GUESTS / f"vultrino_{name}_guest_key.wasm", old / f"vultrino_{name}.wasm")
            host_key = _plugin(ROOT / "plugins" / name, runtime)
            guest_key = _plugin(old, runtime)
            view = CredentialView("bench", ctype, fields)
            try:
                _pair(
                    res,
                    f"{name} {action}",
                    host_key.prepare(action, view),
                    guest_key.prepare(action, view),
                    params,
                    pairs,
                    calls,
                )
            finally:
                host_key.close()
                guest_key.close()
