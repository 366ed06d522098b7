"""Aggregate REST calls/s of one `vultrino serve` replica against three on one PostgreSQL
(docs/scaling.md), side by side in the same run, and where a call's time goes.

Setup: a throwaway PostgreSQL cluster on loopback (as the tests start it); home A's store is in
it, with a ``[[policies]]`` rate limit on the credential (so every call takes a token from the
one shared bucket: one round trip, as replicas that behave as one must), and the echo plugin
installed through A, so homes B and C get it from the database (the shared plugins) and hold
nothing but a config.toml. Three real ``python -m vultrino serve`` processes run on them.

Load: ``CLIENTS`` client processes, each with one keep-alive httpx connection, call ``POST
/api/v1/execute`` (the echo action: store lookup, validation, the token, the wasm call,
scrubbing, the audit record) for a fixed window; "1 replica" sends every client to A, "3
replicas" spreads them round-robin over A, B and C. Rounds alternate, and each figure is the
median of its rounds (the machine may be shared: the absolute numbers are noisy).

Where the time goes, per call, in the same rounds: the client's p50; the pipeline's p50 (the
``duration_ms`` the replicas wrote to their audit logs: resolve, decide, the token's round trip,
the wasm call, scrub, audit); the rest (HTTP parsing, the key check, the thread hop, JSON,
loopback, and waiting for a CPU); the database statements per call (from
pg_stat_statements) and one token's round trip measured alone; and the CPU each call costs the
replicas (/proc) and the clients, which on a small machine is what bounds the total. Skipped,
saying so, when PostgreSQL's binaries or psycopg are absent.

Alone: ``python benchmarks/bench_replicas.py [--smoke]``; with the rest: ``benchmarks/run.py``.
"""

from __future__ import annotations

import json
import multiprocessing
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
CLIENTS = 6
RATE_POLICY = (
    '[[policies]]\nname = "budget"\ncredential_pattern = "echo"\ndefault_action = "allow"\n'
    "rules = [{ condition = { rate_limit = { max = 1000000000, window_secs = 60 } }, "
    'action = "allow" }]\n'
)
BODY = {"credential": "echo", "action": "echo", "params": {"data": "x" * 60}}


_COUNT = """
SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT LIKE '%pg_stat_statements%'
"""


def _make_cluster(bin_dir: Path) -> Any:
    """The tests' throwaway cluster, with pg_stat_statements loaded where it is installed (it
    counts the statements the replicas run, at once, unlike pg_stat_database)."""
    from tests.pgcluster import Cluster

    class WithStatements(Cluster):
        def start(self) -> None:
            self.run("initdb", "-D", str(self.data), "-U", "vultrino_test", "-A", "trust")
            opts = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                "-c shared_preload_libraries=pg_stat_statements"
            )
            started = self.run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", opts,
                "-w", "start", check=False,
            )  # fmt: skip
            if started.returncode != 0:  # no pg_stat_statements: start without it
                super().restart_stopped()

        def statements_counted(self, url: str) -> bool:
            import psycopg

            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                    conn.execute("SELECT pg_stat_statements_reset()")
            except psycopg.Error:
                return False
            return True

    return WithStatements(bin_dir)


def _client(job: tuple[str, str, float, float]) -> tuple[int, int, list[float], float]:
    """One client process: warm up, wait for the common start, call until the window ends.
    Returns (calls, failed calls, latencies in seconds, CPU seconds the client used)."""
    import httpx

    url, key, start_at, seconds = job
    lat: list[float] = []
    failed = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        for _ in range(5):
            c.post("/api/v1/execute", json=BODY)
        time.sleep(max(0.0, start_at - time.time()))
        cpu = time.process_time()
        end = start_at + seconds
        while time.time() < end:
            t0 = time.perf_counter()
            r = c.post("/api/v1/execute", json=BODY)
            lat.append(time.perf_counter() - t0)
            if r.status_code != 200:
                failed += 1
        cpu = time.process_time() - cpu
    return len(lat), failed, lat, cpu


def _cpu(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU seconds (user + system) the replica processes have used so far (Linux /proc)."""
    total = 0
    for proc in procs:
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def _ready(_: int) -> bool:
    import httpx  # noqa: F401 - imported once per client process, before any window

    return True


def _start(home: Path) -> tuple[subprocess.Popen[bytes], Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    env.update(VULTRINO_HOME=str(home), VULTRINO_PASSWORD=PASSWORD, PYTHONPATH=str(ROOT))
    errlog = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed by caller
    proc = subprocess.Popen(
        [sys.executable, "-m", "vultrino", "serve", "--bind", "127.0.0.1:0"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=errlog,
    )
    return proc, errlog


def _url(proc: subprocess.Popen[bytes], errlog: Any) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        errlog.seek(0)
        text = errlog.read()
        found = _LISTENING.search(text)
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"a replica exited: {text}")
        time.sleep(0.05)
    raise RuntimeError("a replica did not start")


def _audit_durations(homes: list[Path], offsets: dict[Path, int]) -> list[float]:
    """``duration_ms`` of the ok records the replicas wrote since ``offsets`` (moved on)."""
    out: list[float] = []
    for home in homes:
        path = home / "audit.log"
        if not path.exists():
            continue
        with path.open("rb") as f:
            f.seek(offsets.get(home, 0))
            data = f.read()
            offsets[home] = f.tell()
        for line in data.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("outcome") == "ok" and "duration_ms" in rec:
                out.append(float(rec["duration_ms"]))
    return out


def run(res: Any, smoke: bool) -> None:
    try:
        import psycopg
    except ImportError:
        print("  psycopg not installed: replicas benchmark skipped", file=sys.stderr)
        return
    from run import ECHO_MANIFEST, wat

    from tests.pgcluster import find_bin_dir
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams, open_store

    bin_dir = find_bin_dir()
    if bin_dir is None:
        print(
            "  PostgreSQL's initdb/pg_ctl not installed: replicas benchmark skipped",
            file=sys.stderr,
        )
        return
    seconds = 0.5 if smoke else 4.0
    pairs = 1 if smoke else 5
    clients = 2 if smoke else CLIENTS
    cluster = _make_cluster(bin_dir)
    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-replicas-"))
    procs: list[tuple[subprocess.Popen[bytes], Any]] = []
    pool = None
    try:
        cluster.start()
        url = cluster.new_database()
        counted = cluster.statements_counted(url)
        config = f'[store]\nurl = "{url}"\n' + RATE_POLICY
        homes = [root / name for name in ("a", "b", "c")]
        for home in homes:
            home.mkdir()
            (home / "config.toml").write_text(config)
        src = root / "src" / "echo"
        src.mkdir(parents=True)
        (src / "plugin.toml").write_text(ECHO_MANIFEST)
        (src / "echo.wasm").write_bytes(wat("abi2_echo.wat"))
        with Vultrino.init(homes[0], PASSWORD, kdf=KdfParams.minimal()) as v:
            v.install_plugin(str(src))  # shared through the database: B and C fetch it
            v.add_credential("echo", "plugin:echo:key", {"key": "bench-secret-value-0123"})
            _, key = v.create_key("bench", role="executor")
        with open_store(url, PASSWORD) as store:  # before the replicas start: alone
            took = []
            for _ in range(50 if smoke else 500):
                t0 = time.perf_counter()
                store.take_token("bench-probe", 1_000_000_000, 60.0)
                took.append(time.perf_counter() - t0)
            token_ms = statistics.median(took) * 1e3
        procs = [_start(h) for h in homes]
        # the client processes start (and import httpx) while the replicas start
        pool = multiprocessing.get_context("spawn").Pool(clients)
        pool.map(_ready, range(clients))
        urls = [_url(p, e) for p, e in procs]

        def stats() -> tuple[int, float]:
            """Statements the replicas ran so far, and their execution time (ms)."""
            if not counted:
                return 0, 0.0
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute(_COUNT).fetchone()
            return (int(row[0]), float(row[1])) if row else (0, 0.0)

        offsets: dict[Path, int] = {}
        _audit_durations(homes, offsets)
        rows: dict[int, dict[str, list[float]]] = {
            n: {
                "rate": [],
                "p50": [],
                "pipeline": [],
                "stmts": [],
                "db_ms": [],
                "failed": [],
                "server_cpu": [],
                "client_cpu": [],
            }
            for n in (1, 3)
        }
        for i in range(pairs):
            for n in (1, 3) if i % 2 == 0 else (3, 1):
                targets = [urls[c % n] for c in range(clients)]
                start_at = time.time() + 1.0  # every client connected and warm by then
                before = stats()
                cpu_before = _cpu([p for p, _ in procs])
                got = pool.map(_client, [(u, key, start_at, seconds) for u in targets])
                after = stats()
                cpu_after = _cpu([p for p, _ in procs])
                calls = sum(g[0] for g in got)
                lat = [x for g in got for x in g[2]]
                rows[n]["server_cpu"].append((cpu_after - cpu_before) / max(1, calls) * 1e3)
                rows[n]["client_cpu"].append(sum(g[3] for g in got) / max(1, calls) * 1e3)
                durations = _audit_durations(homes, offsets)
                rows[n]["rate"].append(calls / seconds)
                rows[n]["p50"].append(statistics.median(lat) * 1e3)
                rows[n]["failed"].append(float(sum(g[1] for g in got)))
                if durations:
                    rows[n]["pipeline"].append(statistics.median(durations))
                if counted:
                    rows[n]["stmts"].append((after[0] - before[0]) / max(1, calls))
                    rows[n]["db_ms"].append((after[1] - before[1]) / max(1, calls))
    finally:
        if pool is not None:
            pool.terminate()
        for proc, errlog in procs:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            errlog.close()
        cluster.remove()
        shutil.rmtree(root, ignore_errors=True)

    def med(n: int, what: str) -> float:
        values = rows[n][what]
        return statistics.median(values) if values else float("nan")

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    how = (
        f"{clients} client processes (keep-alive), {seconds:g} s windows, median of {pairs} "
        f"alternating rounds; {cores} cores shared by clients, replicas and PostgreSQL"
    )
    for n in (1, 3):
        res.add(
            f"replicas: aggregate POST /api/v1/execute calls/s, {n} replica{'s' * (n > 1)}",
            med(n, "rate"),
            "calls/s",
            note=f"{how}; failed calls: {med(n, 'failed'):.0f}",
        )
    res.add(
        "replicas: 3 replicas' calls/s over 1 replica's",
        med(3, "rate") / med(1, "rate"),
        "x",
        note=f"same run; on {cores} cores three replicas cannot be 3x: the clients, the "
        "replicas and PostgreSQL share them",
    )
    for n in (1, 3):
        p50, pipe = med(n, "p50"), med(n, "pipeline")
        db = (
            f"{med(n, 'stmts'):.2f} database statements per call, executing "
            f"{med(n, 'db_ms') * 1e3:.0f} µs of it in PostgreSQL (pg_stat_statements)"
            if counted
            else "database statements not counted (no pg_stat_statements)"
        )
        res.add(
            f"replicas: where a call's time goes, {n} replica{'s' * (n > 1)} (client p50)",
            p50,
            "ms",
            note=(
                f"pipeline p50 {pipe:.3f} ms (audit duration_ms: resolve, decide, the shared "
                f"token, wasm, scrub, audit); REST, HTTP, loopback and waiting for a CPU "
                f"{p50 - pipe:.3f} ms; {db}; one token round trip alone (no load): "
                f"{token_ms:.3f} ms. CPU per call: replicas {med(n, 'server_cpu'):.2f} ms, "
                f"clients {med(n, 'client_cpu'):.2f} ms"
            ),
        )


if __name__ == "__main__":  # this topic alone: python benchmarks/bench_replicas.py [--smoke]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT))
    from run import Results

    results = Results()
    run(results, "--smoke" in sys.argv[1:])
    for fig in results.figures:
        print(f"{fig.name}: {fig.value:.4g} {fig.unit}\n    {fig.note}")
