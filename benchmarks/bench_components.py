"""Components on wasmtime: the data path (world 1.1.0's ``execute-text`` against 1.0.0's
``execute`` and against the same work as a core module), a Rust plugin as a component against
the same code as a core module, and a componentize-py plugin's own costs.

Every comparison is paired: the two sides alternate in one run, several rounds, and the figure
is the median of each side and of the per-round ratios, so a shared, noisy machine moves both
sides alike.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.run import ROOT, Results, per_call, wat

ADAPTER = Path(
    os.environ.get("VULTRINO_WASI_ADAPTER")
    or ROOT / ".cache" / "wasi_snapshot_preview1.reactor.wasm"
)
TOTP_REQUEST = {
    "action": "code",
    "params": {"time": 59},
    "credential": {
        "alias": "t",
        "type": "totp",
        "fields": {"secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "digits": 8},
    },
}


def paired(
    a: Callable[[], object], b: Callable[[], object], n: int, rounds: int
) -> tuple[float, float, float]:
    """Medians of ``a``'s and ``b``'s seconds per call and of b/a, over alternating rounds."""
    a_s, b_s = [], []
    for _ in range(rounds):
        a_s.append(per_call(a, n, repeat=1))
        b_s.append(per_call(b, n, repeat=1))
    ratio = statistics.median(y / x for x, y in zip(a_s, b_s, strict=True))
    return statistics.median(a_s), statistics.median(b_s), ratio


def run(res: Results, smoke: bool) -> None:
    from vultrino.runtime import WasmRuntime

    rounds = 3 if smoke else 7
    with tempfile.TemporaryDirectory() as tmp, WasmRuntime(cache_dir=Path(tmp)) as rt:
        core = rt.load(wat("abi2_echo.wat"), plugin="core")
        text = rt.load(wat("component_echo.wat"), plugin="text")
        rt._components.text = False  # the same component through 1.0.0's execute (list<u8>)
        listed = rt.load(wat("component_echo.wat"), plugin="list")
        rt._components.text = True
        for label, size, n in (
            ("~100 B", 60, 200 if smoke else 3000),
            ("64 KiB", 64 * 1024, 20 if smoke else 300),
            ("1 MiB", 1 << 20, 2 if smoke else 20),
        ):
            for kind in ("text-like", "random bytes"):
                if kind == "text-like":
                    data: Any = "x" * size if size < 1000 else b"x" * size
                else:
                    data = os.urandom(size)
                req = {"action": "echo", "params": {"data": data}, "credential": None}
                assert text.execute(req) == listed.execute(req) == core.execute(req)
                c, t, ratio = paired(
                    lambda req=req: core.execute(req), lambda req=req: text.execute(req), n, rounds
                )
                res.add(f"core module: echo, {label} {kind}", c * 1e6, "µs")
                res.add(f"component execute-text: echo, {label} {kind}", t * 1e6, "µs")
                res.add(
                    f"component execute-text / core module, {label} {kind}",
                    ratio,
                    "x",
                    goal=3.0 if kind == "text-like" else None,
                    note="paired rounds, median ratio"
                    + ("" if kind == "text-like" else "; each byte >= 0x80 is transcoded"),
                )
                if kind == "text-like" and (size < 100_000 or not smoke):
                    m = max(2, n // (30 if size > 1000 else 3))
                    us = per_call(lambda req=req: listed.execute(req), m, repeat=1) * 1e6
                    res.add(
                        f"component execute (1.0.0 list<u8>): echo, {label}",
                        us,
                        "µs",
                        note="the same component, the path 1.0.0 components take",
                    )
    bench_rust_totp(res, smoke, rounds)
    if not smoke:
        bench_python_template(res)


def _component_of(module: Path, out: Path) -> bool:
    tool = shutil.which("wasm-tools") or str(Path(sys.executable).with_name("wasm-tools"))
    if not (ADAPTER.is_file() and Path(tool).exists()):
        return False
    env = dict(os.environ, PATH=f"{Path(tool).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "rust-component.sh"), str(module), str(out), str(ADAPTER)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


def bench_rust_totp(res: Results, smoke: bool, rounds: int) -> None:
    """The first-party totp plugin: its core module against the component made from it.

    The module is totp 0.1.0 (``benchmarks/guests/vultrino_totp_guest_key.wasm``), whose secret
    is in the request: the same work on both sides, so the ratio is what the component model
    itself costs a small call. totp 0.2.0 keeps the secret in the host, so each of its calls
    also crosses into the host's HMAC (``bench_totpjwt`` measures that)."""
    from vultrino.runtime import WasmRuntime

    module = ROOT / "benchmarks" / "guests" / "vultrino_totp_guest_key.wasm"
    with tempfile.TemporaryDirectory() as tmp:
        comp = Path(tmp) / "totp-component.wasm"
        if not _component_of(module, comp):
            print("  (no wasm-tools or preview-1 adapter: Rust component rows skipped)")
            return
        with WasmRuntime(cache_dir=Path(tmp) / "cache") as rt:
            core = rt.load(module.read_bytes(), plugin="core")
            component = rt.load(comp.read_bytes(), plugin="component")
            answer = core.execute(TOTP_REQUEST)
            assert "ok" in answer and answer == component.execute(TOTP_REQUEST), answer
            n = 200 if smoke else 3000
            c, t, ratio = paired(
                lambda: core.execute(TOTP_REQUEST),
                lambda: component.execute(TOTP_REQUEST),
                n,
                rounds,
            )
            res.add("rust totp: core module call", c * 1e6, "µs")
            res.add("rust totp: component call (execute-text)", t * 1e6, "µs")
            res.add(
                "rust totp: component / core module",
                ratio,
                "x",
                goal=1.5,
                note="paired rounds, median ratio",
            )


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_python_template(res: Results) -> None:
    """The Python template as a componentize-py component: build, the compile that install
    puts into the cache, a cached load, a warm call and what one more instance costs."""
    from vultrino.plugins.install import _componentize
    from vultrino.runtime import WasmRuntime

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plugin.wasm"
        t = time.perf_counter()
        _componentize.build(ROOT / "sdk-python-template", out=out, sandbox="off")
        res.add("python template: componentize-py build", time.perf_counter() - t, "s")
        wasm = out.read_bytes()
        mb = len(wasm) / 1e6
        cache = Path(tmp) / "cache"
        with WasmRuntime(cache_dir=cache) as rt:
            t = time.perf_counter()
            rt.load(wasm, plugin="py").close()
            res.add(
                f"python template: compile at install ({mb:.1f} MB)",
                time.perf_counter() - t,
                "s",
                note="compile + serialize into the cache + first instantiation; once per version",
            )
        loads = []
        for _ in range(5):
            with WasmRuntime(cache_dir=cache) as rt:
                t = time.perf_counter()
                rt.load(wasm, plugin="py").close()
                loads.append(time.perf_counter() - t)
        res.add(
            "python template: cached load",
            statistics.median(loads) * 1e3,
            "ms",
            note="checksum + deserialize + instantiate, median of 5",
        )
        with WasmRuntime(cache_dir=cache) as rt:
            py = rt.load(wasm, plugin="py")
            req = {
                "action": "greet",
                "params": {"name": "Ada"},
                "credential": {"alias": "a", "type": "t", "fields": {"token": "x"}},
            }
            assert py.execute(req) == {"ok": {"message": "Hello, Ada."}}
            us = per_call(lambda: py.execute(req), 2000, repeat=3) * 1e6
            res.add("python template: warm call (greet)", us, "µs", note="a pooled instance")
            before = _rss()
            sessions = [py._new_session() for _ in range(4)]  # type: ignore[attr-defined]
            grown = (_rss() - before) / 4
            for s in sessions:
                s.close()
            res.add(
                "python template: memory per extra instance",
                grown / (1 << 20),
                "MiB",
                note="process RSS growth per instance, 4 instances",
            )
