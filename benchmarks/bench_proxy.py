"""A 1 MiB GET through the forward proxy (`vultrino serve --proxy`), against the same GET with
httpx straight to the upstream, measured in the same run.

The upstream is a small threaded HTTP/1.1 server in its own process on 127.0.0.1 answering
1 MiB (with Content-Length, keep-alive). The proxy is a real ``python -m vultrino serve
--proxy`` process; the client is httpx with one keep-alive connection per target, in this
process. Through the proxy a request also pays the key check, the pipeline (allowlist, address
check, audit record), a second HTTP hop and the streaming scrubber over the body. Rounds
alternate between the two paths, and each figure is the median of its rounds' medians (the
machine may be shared).
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
_PROXY = re.compile(r"Vultrino proxy listening on (\S+)")
PASSWORD = "bench-password"
SECRET = "bench-proxy-secret-0123456789"
SIZE = 1024 * 1024

UPSTREAM = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = bytes(range(256)) * 4096

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer " + sys.argv[1]:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

server = ThreadingHTTPServer(("127.0.0.1", 0), H)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def _cpu_s(pid: int) -> float:
    """The process's CPU time (user + system, every thread), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for(errlog: Any, proc: subprocess.Popen[bytes], pattern: re.Pattern[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        errlog.seek(0)
        found = pattern.search(errlog.read())
        if found:
            return found.group(1)
        if proc.poll() is not None:
            errlog.seek(0)
            raise RuntimeError(f"the server exited: {errlog.read()}")
        time.sleep(0.05)
    raise RuntimeError("the server did not start")


def run(res: Any, smoke: bool) -> None:
    import httpx

    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-proxy-"))
    upstream = proxy_proc = None
    errlog = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        upstream = subprocess.Popen(
            [sys.executable, "-c", UPSTREAM, SECRET],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert upstream.stdout is not None
        base = f"http://127.0.0.1:{int(upstream.stdout.readline())}"
        home = root / "home"
        with Vultrino.init(home, PASSWORD, kdf=KdfParams.minimal()) as v:
            v.add_credential("up", "bearer", {"token": SECRET}, allow=[f"{base}/*"])
            _, key = v.create_key("bench", role="executor")
        env = {k: val for k, val in os.environ.items() if not k.startswith("VULTRINO_")}
        env.update(VULTRINO_HOME=str(home), VULTRINO_PASSWORD=PASSWORD, PYTHONPATH=str(ROOT))
        proxy_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vultrino",
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--proxy-listen",
                "127.0.0.1:0",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )
        proxy = _wait_for(errlog, proxy_proc, _PROXY)
        n = 5 if smoke else 60
        rounds = 2 if smoke else 7
        through: list[float] = []
        direct: list[float] = []
        cpu = 0.0  # the proxy process's CPU time over its rounds
        with (
            httpx.Client(
                base_url=f"{proxy}/{base}",
                headers={"X-Vultrino-Credential": "up", "Proxy-Authorization": f"Bearer {key}"},
                timeout=60,
            ) as via,
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {SECRET}"}, timeout=60
            ) as straight,
        ):
            first = via.get("/mib")
            assert first.status_code == 200 and len(first.content) == SIZE, first.text[:200]
            assert straight.get("/mib").content == first.content
            for _ in range(3):  # warm both
                via.get("/mib")
                straight.get("/mib")
            for _ in range(rounds):
                for client, out in ((via, through), (straight, direct)):
                    lat = []
                    spent = _cpu_s(proxy_proc.pid)
                    for _ in range(n):
                        t0 = time.perf_counter()
                        r = client.get("/mib")
                        size = len(r.content)
                        lat.append(time.perf_counter() - t0)
                        assert size == SIZE
                    out.append(statistics.median(lat))
                    if client is via:
                        cpu += _cpu_s(proxy_proc.pid) - spent
    finally:
        for proc in (proxy_proc, upstream):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)
        if upstream is not None and upstream.stdout is not None:
            upstream.stdout.close()
        errlog.close()
        shutil.rmtree(root, ignore_errors=True)
    p50 = statistics.median(through) * 1000
    ref = statistics.median(direct) * 1000
    res.add(
        "proxy: 1 MiB GET through vultrino serve --proxy, p50",
        p50,
        "ms",
        note=f"median of {rounds} rounds of {n}, keep-alive; the same GET with httpx straight "
        f"to the upstream in the same rounds: {ref:.2f} ms ({SIZE / 1048576 / ref * 1000:.0f} "
        f"MiB/s); through the proxy {SIZE / 1048576 / p50 * 1000:.0f} MiB/s",
    )
    res.add("proxy: 1 MiB GET overhead over httpx direct", p50 / ref, "x", note="p50 / p50")
    res.add(
        "proxy: server CPU per 1 MiB GET",
        cpu / (rounds * n) * 1000,
        "ms",
        note="the vultrino serve process's user + system time over its rounds, per request "
        "(/proc/PID/stat): less disturbed by a shared machine than the wall clock",
    )
