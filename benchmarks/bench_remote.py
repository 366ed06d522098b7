"""`POST /api/v1/execute` of a trivial action on `vultrino serve`, paired with a bare Starlette
endpoint on the same uvicorn settings (benchmarks/bare_rest_server.py), and the keep-alive
round trip of `vultrino mcp --http`.

Both servers run as processes, not pinned (on a shared machine a pinned server's latency is
mostly its core's run queue); the client (httpx, one keep-alive connection) runs here. Rounds
alternate between the two servers. Besides wall-clock latency, each round reads the server
process's CPU time, every thread's (``/proc/PID/stat``): CPU per call is what one core can
serve (``1 / cpu``), a figure a shared machine disturbs far less than the wall clock. Every
figure is the median of its rounds.
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
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password"


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(cmd: list[str], env: dict[str, str]) -> tuple[Any, str, IO[str]]:
    errlog = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - caller closes
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=errlog,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        errlog.seek(0)
        found = re.search(r"listening on (http://\S+)", errlog.read())
        if found:
            return proc, found.group(1), errlog
        if proc.poll() is not None:
            errlog.seek(0)
            raise RuntimeError(f"{cmd[-1]} exited: {errlog.read()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{cmd} did not start")


def _round(post: Callable[[], Any], pid: int, n: int) -> tuple[float, float, float]:
    """(p50 seconds, calls/s, server CPU seconds per call) of ``n`` sequential calls."""
    lat = []
    cpu0 = _cpu_s(pid)
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        post()
        lat.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    return statistics.median(lat), n / wall, (_cpu_s(pid) - cpu0) / n


def run(res: Any, smoke: bool) -> None:
    import httpx

    from benchmarks.run import ECHO_MANIFEST, wat
    from vultrino.core import Vultrino
    from vultrino.server.run import event_loop, http_parser
    from vultrino.store import KdfParams

    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-remote-"))
    procs: list[tuple[Any, IO[str]]] = []
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
        py = sys.executable
        serve, serve_url, log1 = _start(
            [py, "-m", "vultrino", "serve", "--bind", "127.0.0.1:0"], env
        )
        procs.append((serve, log1))
        bare, bare_url, log2 = _start([py, str(ROOT / "benchmarks" / "bare_rest_server.py")], env)
        procs.append((bare, log2))
        body = {"credential": "echo", "action": "echo", "params": {"data": "x" * 60}}
        n = 100 if smoke else 1000
        rounds = 2 if smoke else 7
        auth = {"Authorization": f"Bearer {key}"}
        with (
            httpx.Client(base_url=serve_url, headers=auth, trust_env=False) as to_serve,
            httpx.Client(base_url=bare_url, trust_env=False) as to_bare,
        ):
            first = to_serve.post("/api/v1/execute", json=body)
            assert first.status_code == 200, first.text
            assert first.json()["result"]["credential"]["fields"]["key"] == "[REDACTED]"
            assert to_bare.post("/api/v1/execute", json=body).status_code == 200

            def on_serve() -> None:
                to_serve.post("/api/v1/execute", json=body)

            def on_bare() -> None:
                to_bare.post("/api/v1/execute", json=body)

            for _ in range(n // 5):  # warm both
                on_serve()
                on_bare()
            served: list[tuple[float, float, float]] = []
            refs: list[tuple[float, float, float]] = []
            for _ in range(rounds):
                served.append(_round(on_serve, serve.pid, n))
                refs.append(_round(on_bare, bare.pid, n))
        mcp_p50 = _mcp_http_round_trip(env, 50 if smoke else 400)
    finally:
        for proc, log in procs:
            proc.terminate()
            proc.wait(timeout=60)
            log.close()
        shutil.rmtree(root, ignore_errors=True)

    def med(rows: list[tuple[float, float, float]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    stack = f"uvicorn with {http_parser()} on {event_loop()}"
    p50, ref_p50 = med(served, 0) * 1000, med(refs, 0) * 1000
    res.add(
        "remote: POST /api/v1/execute p50 (keep-alive, trivial action)",
        p50,
        "ms",
        2.0,
        note=f"median of {rounds} rounds of {n}, paired with a bare Starlette endpoint on the "
        f"same {stack}: {ref_p50:.3f} ms",
    )
    cpu, ref_cpu = med(served, 2) * 1e6, med(refs, 2) * 1e6
    per_core = 1e6 / cpu if cpu > 0 else float("nan")
    res.add(
        "remote: POST /api/v1/execute calls/s on one core (server CPU per call)",
        per_core,
        "calls/s",
        note=f"goal >= 500 calls/s: {'ok' if per_core >= 500 else 'MISSED'}; {cpu:.0f} µs of "
        f"server CPU per call (the bare endpoint: {ref_cpu:.0f} µs); one sequential client "
        f"measured {med(served, 1):.0f} calls/s (bare: {med(refs, 1):.0f})",
        goal_text=">= 500 calls/s",
    )
    res.add(
        "remote: execute over the bare endpoint",
        p50 / ref_p50,
        "x",
        note=f"p50 / p50; server CPU {cpu / ref_cpu:.2f}x",
    )
    res.add(
        "remote: vultrino mcp --http keep-alive round trip p50 (ping)",
        mcp_p50,
        "ms",
        5.0,
        note="one keep-alive connection; a listening socket without TCP_NODELAY shows ~40 ms "
        "here (the client's delayed ACK)",
    )


def _mcp_http_round_trip(env: dict[str, str], n: int) -> float:
    """p50 in ms of ``ping`` on one keep-alive connection to ``vultrino mcp --http``."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc, url, log = _start(
        [sys.executable, "-m", "vultrino", "mcp", "--http", "--port", str(port)], env
    )
    try:
        token = (Path(env["VULTRINO_HOME"]) / "mcp-token").read_text(encoding="utf-8").strip()
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
        }
        with httpx.Client(headers=headers, timeout=30, trust_env=False) as client:
            init = client.post(
                url,
                json={
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "bench", "version": "1"},
                    },
                },
            )
            assert init.status_code == 200, init.text
            session = {
                "mcp-session-id": init.headers["mcp-session-id"],
                "mcp-protocol-version": "2025-06-18",
            }
            client.post(
                url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
            )
            lat = []
            for i in range(n):
                t0 = time.perf_counter()
                r = client.post(
                    url, json={"jsonrpc": "2.0", "id": i + 1, "method": "ping"}, headers=session
                )
                lat.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
        return statistics.median(lat) * 1000
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
