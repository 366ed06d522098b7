"""The web UI's dashboard with 1,000 credentials and 100,000 audit records, against the same
query through the Python API, measured in the same run.

The server is a real ``python -m vultrino serve`` process pinned to one core; the client is
httpx with one keep-alive connection and a logged-in session, pinned to another core where
there is one. A dashboard is what :func:`vultrino.server.ui.views.dashboard_data` gathers
(counts of credentials, plugins, agents and keys; the newest records; calls per agent over the
newest 1,000 records, read from the log's end) rendered to HTML; the reference is that same
function called in this process on a facade over the same home. Rounds alternate between the
two; each figure is the median of its rounds' medians (the machine may be shared).
"""

from __future__ import annotations

import json
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
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PASSWORD = "bench-password"
ADMIN = "bench admin password"


def _pin(cores: set[int]) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


def _fill(home: Path, credentials: int, records: int) -> None:
    from vultrino.core import Vultrino
    from vultrino.store import Credential, KdfParams

    with Vultrino.init(home, PASSWORD, kdf=KdfParams.minimal()) as v:
        v.set_admin_password(ADMIN)
        for i in range(10):
            v.add_agent(f"agent-{i}", credentials=["cred-*"])
        creds = [
            Credential(
                alias=f"cred-{i:04d}",
                type="api_key",
                fields={"key": f"secret-{i:04d}-0123456789"},
                description=f"bench credential {i}",
                secret_fields=["key"],
            )
            for i in range(credentials)
        ]
        v._s.store.add_many(creds)  # one sealed write for the setup, not 1,000
    lines = []
    for i in range(records):
        rec = {
            "ts": f"2026-12-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.000+00:00",
            "alias": f"cred-{i % credentials:04d}",
            "plugin": "http",
            "action": "request",
            "agent": f"agent-{i % 10}",
            "outcome": "ok" if i % 17 else "error",
            "duration_ms": 1.25,
            "source": "mcp",
        }
        lines.append(json.dumps(rec, separators=(",", ":")))
    with (home / "audit.log").open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def run(res: Any, smoke: bool) -> None:
    import httpx

    from vultrino.core import Vultrino
    from vultrino.server.ui.views import dashboard_data

    credentials, records = (100, 5_000) if smoke else (1_000, 100_000)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    server_core = {cores[0]}
    client_core = {cores[1]} if len(cores) > 1 else server_core
    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-webui-"))
    proc = None
    errlog = None
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        home = root / "home"
        _fill(home, credentials, records)
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
        n = 5 if smoke else 40
        rounds = 2 if smoke else 7
        with httpx.Client(base_url=url) as client, Vultrino.open(home, PASSWORD) as v:
            login = client.get("/login")
            token = _CSRF.search(login.text)
            assert token, login.text
            r = client.post("/login", data={"csrf": token.group(1), "password": ADMIN})
            assert r.status_code == 303, r.text
            first = client.get("/")
            assert first.status_code == 200 and f"<strong>{credentials}</strong>" in first.text
            assert "agent-9" in first.text, "calls per agent missing"
            data = dashboard_data(v)
            assert data["counts"]["credentials"] == credentials
            for _ in range(3):  # warm both
                client.get("/")
                dashboard_data(v)
            served: list[float] = []
            direct: list[float] = []
            size = len(first.content)
            for _ in range(rounds):
                lat = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    client.get("/")
                    lat.append(time.perf_counter() - t0)
                served.append(statistics.median(lat))
                lat = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    dashboard_data(v)
                    lat.append(time.perf_counter() - t0)
                direct.append(statistics.median(lat))
    finally:
        if before is not None:
            _pin(before)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        if errlog is not None:
            errlog.close()
        shutil.rmtree(root, ignore_errors=True)
    p50 = statistics.median(served) * 1000
    ref = statistics.median(direct) * 1000
    res.add(
        f"webui: dashboard GET / p50 ({credentials:,} credentials, {records:,} audit records)",
        p50,
        "ms",
        50.0,
        note=f"median of {rounds} rounds of {n}, {size / 1024:.0f} KiB of HTML; server on one "
        f"core; the same query through the Python API in the same rounds: {ref:.2f} ms",
    )
    res.add("webui: dashboard over the Python API's query", p50 / ref, "x", note="p50 / p50")
