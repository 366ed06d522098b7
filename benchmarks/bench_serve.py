"""`POST /api/v1/execute` of a trivial action on `vultrino serve`, against the same call
through the Python API, measured in the same run.

The server is a real ``python -m vultrino serve`` process pinned to one core; the client is
httpx with one keep-alive connection, in this process, pinned to another core where there is
one. The action is the echo guest (ABI 2): store lookup, validation, the wasm call, scrubbing
the echoed secret and the audit record are in both figures; the server's adds HTTP parsing,
the key check, the thread hop and JSON. Rounds alternate between the two, and each figure is
the median of its rounds' medians (the machine may be shared).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"Vultrino server listening on (\S+)")
PASSWORD = "bench-password"


def _pin(cores: set[int]) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


def run(res: Any, smoke: bool) -> None:
    import httpx

    from benchmarks.run import ECHO_MANIFEST, wat
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    server_core = {cores[0]}
    client_core = {cores[1]} if len(cores) > 1 else server_core
    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-serve-"))
    proc = None
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        home = root / "home"
        Vultrino.init(home, PASSWORD, kdf=KdfParams.minimal()).close()
        d = home / "plugins" / "echo"
        d.mkdir(parents=True)
        (d / "plugin.toml").write_text(ECHO_MANIFEST)
        (d / "echo.wasm").write_bytes(wat("abi2_echo.wat"))
        with Vultrino.open(home, PASSWORD) as v:
            v.add_credential("echo", "plugin:echo:key", {"key": "bench-secret-value-0123"})
            _, key = v.create_key("bench", role="executor")
        env = {k: val for k, val in os.environ.items() if not k.startswith("VULTRINO_")}
        env.update(VULTRINO_HOME=str(home), VULTRINO_PASSWORD=PASSWORD, PYTHONPATH=str(ROOT))
        errlog = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "vultrino", "serve", "--bind", "127.0.0.1:0"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
            preexec_fn=lambda: _pin(server_core),  # noqa: PLW1509 - affinity only
        )
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            errlog.seek(0)
            found = _LISTENING.search(errlog.read())
            url = found.group(1) if found else None
            if proc.poll() is not None:
                errlog.seek(0)
                raise RuntimeError(f"the server exited: {errlog.read()}")
            time.sleep(0.05)
        if url is None:
            raise RuntimeError("the server did not start")
        _pin(client_core)
        body = {"credential": "echo", "action": "echo", "params": {"data": "x" * 60}}
        n = 50 if smoke else 1000
        rounds = 2 if smoke else 7
        with (
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client,
            Vultrino.open(home, PASSWORD) as v,
        ):
            first = client.post("/api/v1/execute", json=body)
            assert first.status_code == 200, first.text
            assert first.json()["result"]["credential"]["fields"]["key"] == "[REDACTED]"
            for _ in range(n // 5):  # warm both
                client.post("/api/v1/execute", json=body)
                v.execute("echo", "echo", body["params"])
            served: list[float] = []
            rates: list[float] = []
            direct: list[float] = []
            for _ in range(rounds):
                lat = []
                start = time.perf_counter()
                for _ in range(n):
                    t0 = time.perf_counter()
                    client.post("/api/v1/execute", json=body)
                    lat.append(time.perf_counter() - t0)
                rates.append(n / (time.perf_counter() - start))
                served.append(statistics.median(lat))
                lat = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    v.execute("echo", "echo", body["params"])
                    lat.append(time.perf_counter() - t0)
                direct.append(statistics.median(lat))
    finally:
        if before is not None:
            _pin(before)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
            errlog.close()
        shutil.rmtree(root, ignore_errors=True)
    p50 = statistics.median(served) * 1000
    ref = statistics.median(direct) * 1000
    res.add(
        "serve: POST /api/v1/execute p50 (keep-alive, trivial action)",
        p50,
        "ms",
        2.0,
        note=f"median of {rounds} rounds of {n}; server on one core; same call through the "
        f"Python API in the same rounds: {ref * 1000:.0f} µs",
    )
    rate = statistics.median(rates)
    res.add(
        "serve: POST /api/v1/execute calls/s (one client, keep-alive)",
        rate,
        "calls/s",
        note=f"goal >= 500 calls/s: {'ok' if rate >= 500 else 'MISSED'}; one sequential client, "
        "server on one core",
        goal_text=">= 500 calls/s",
    )
    res.add("serve: overhead over the Python API", p50 / ref, "x", note="p50 / p50")
    _key_use(res, smoke)


def _key_use(res: Any, smoke: bool) -> None:
    """What recording a key's last use costs per call, against one sealed store write (what
    writing it into the store on every call would cost)."""
    from vultrino._keyuse import KeyUse
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    use = KeyUse()
    n = 10_000 if smoke else 200_000
    start = time.perf_counter()
    for _ in range(n):
        use.note("0123456789ab")
    note_us = (time.perf_counter() - start) / n * 1e6
    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-keyuse-"))
    try:
        with Vultrino.init(root / "h", PASSWORD, kdf=KdfParams.minimal()) as v:
            writes = 5 if smoke else 30
            start = time.perf_counter()
            for i in range(writes):
                v.add_role(f"r{i}", permissions=["read"])
            write_ms = (time.perf_counter() - start) / writes * 1000
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res.add(
        "serve: recording a key's last use, per call",
        note_us,
        "µs",
        note=f"in memory, flushed every 5 s; one sealed store write costs {write_ms:.2f} ms",
    )
