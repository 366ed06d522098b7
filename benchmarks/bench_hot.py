"""Where users feel speed: large HTTP bodies, a plugin that logs, wasmer's trivial call, and
many threads calling one plugin. Each row is measured against its reference in the same run.

    .venv/bin/python benchmarks/run.py               # every row, these included
    .venv/bin/python benchmarks/bench_hot.py [--smoke] [--only http,log,wasmer,threads]

Ratios are medians over alternating rounds (ours, then the reference, then ours again ...),
so a machine that is busy for a while weighs on both sides alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GUESTS = ROOT / "benchmarks" / "guests"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password"
SECRET = "hot-bench-secret-0123456789"


def wat(name: str) -> bytes:
    import wasmtime  # the WAT compiler, as in the tests

    return bytes(wasmtime.wat2wasm((GUESTS / name).read_text()))


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired(
    ours: Callable[[], object],
    theirs: Callable[[], object],
    n: int,
    rounds: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float, float]:
    """Alternating rounds of ``n`` calls each: (our median per-call seconds, theirs, median of
    the per-round ratios)."""
    for fn in (ours, theirs):
        for _ in range(max(3, n // 10)):
            fn()
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        for fn, out in ((ours, a), (theirs, b)):
            t = clock()
            for _ in range(n):
                fn()
            out.append((clock() - t) / n)
    return median(a), median(b), median([x / y for x, y in zip(a, b, strict=True)])


@contextlib.contextmanager
def home_with(manifests: dict[str, tuple[str, bytes]], engine: str | None = None) -> Iterator[Path]:
    """A fresh home (minimal KDF) with plugins ``name -> (plugin.toml, module)``."""
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-"))
    try:
        home = root / "home"
        Vultrino.init(home, PASSWORD, kdf=KdfParams.minimal()).close()
        if engine:
            (home / "config.toml").write_text(f'engine = "{engine}"\n')
        for name, (manifest, module) in manifests.items():
            d = home / "plugins" / name
            d.mkdir(parents=True)
            (d / "plugin.toml").write_text(manifest)
            (d / f"{name}.wasm").write_bytes(module)
        yield home
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- HTTP ----------------------------------------------------------------------------------------

SERVER = r"""
import sys, random
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

rng = random.Random(7)
alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,:{}[]"
def body(n):
    return "".join(rng.choice(alphabet) for _ in range(n)).encode()
BODIES = {"/small": body(100), "/64k": body(64 * 1024), "/1m": body(1 << 20)}

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    def log_message(self, *a):
        pass
    def do_GET(self):
        data = BODIES.get(self.path.split("?")[0], b"")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

class S(ThreadingHTTPServer):
    daemon_threads = True

s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    """A keep-alive HTTP/1.1 server in its own process on 127.0.0.1 (so its work does not
    share this process's interpreter lock with either client)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench_http(res: Any, smoke: bool) -> None:
    """``execute`` of an HTTP GET (bearer credential, allowlisted 127.0.0.1) against httpx
    alone reading the same URL as text, in alternating rounds, wall time."""
    import httpx

    from vultrino.core import Vultrino

    rounds = 3 if smoke else 15
    with http_server() as base, home_with({}) as home, Vultrino.open(home, PASSWORD) as v:
        v.add_credential("local", "bearer", {"token": SECRET}, allow=[f"GET {base}/*"])
        client = httpx.Client(trust_env=False)
        try:
            for label, path, n in (
                ("~100 B", "/small", 20 if smoke else 200),
                ("64 KiB", "/64k", 5 if smoke else 100),
                ("1 MiB", "/1m", 2 if smoke else 20),
            ):
                url = base + path
                params = {"url": url}
                result = v.execute("local", "request", params)
                direct = client.get(url, headers={"Authorization": f"Bearer {SECRET}"})
                assert result["status"] == 200 and result["body"] == direct.text, label

                def ours(params: dict[str, Any] = params) -> object:
                    return v.execute("local", "request", params)

                def theirs(url: str = url) -> object:
                    return client.get(url, headers={"Authorization": f"Bearer {SECRET}"}).text

                a, b, ratio = paired(ours, theirs, n, rounds)
                res.add(
                    f"http: execute GET, {label} body",
                    a * 1e3,
                    "ms",
                    note=f"httpx alone against the same local server: {b * 1e3:.3g} ms",
                )
                res.add(
                    f"http: execute GET, {label} body vs httpx alone",
                    ratio,
                    "x",
                    1.3,
                    note="median of alternating rounds, wall time",
                )
        finally:
            client.close()


# --- the facade with a plugin that logs ------------------------------------------------------------

ECHO_MANIFEST = """
[plugin]
name = "{name}"
version = "1.0.0"
wasm_module = "{name}.wasm"

[[credential_types]]
name = "key"
[[credential_types.fields]]
name = "key"
type = "password"
required = true

[[actions]]
name = "echo"
credential_type = "key"
[[actions.parameters]]
name = "data"
type = "string"
required = true
"""


def echo_plugins(*names_and_guests: tuple[str, str]) -> dict[str, tuple[str, bytes]]:
    return {name: (ECHO_MANIFEST.format(name=name), wat(guest)) for name, guest in names_and_guests}


def extism_echo() -> Callable[[], object] | None:
    """Extism's bare echo call of ~100 B (the reference of the facade rows), or None."""
    try:
        import extism
    except ImportError:
        print("  extism not installed: its rows are skipped", file=sys.stderr)
        return None
    plugin = extism.Plugin(wat("extism_echo.wat"), wasi=False)
    data = b"x" * 100
    assert plugin.call("echo", data) == data
    return lambda: plugin.call("echo", data)


def bench_log(res: Any, smoke: bool) -> None:
    """``Vultrino.execute`` of an echo action whose guest calls the host ``log`` once and
    answers with the request (so the credential's secret comes back and is scrubbed), against
    Extism's bare echo call, in alternating rounds of CPU time of the calling thread."""
    from vultrino.core import Vultrino

    theirs = extism_echo()
    if theirs is None:
        return
    plugins = echo_plugins(("echolog", "abi2_echo_log.wat"), ("echo", "abi2_echo.wat"))
    with home_with(plugins) as home, Vultrino.open(home, PASSWORD) as v:
        for alias in ("echolog", "echo"):
            v.add_credential(alias, f"plugin:{alias}:key", {"key": SECRET})
        params = {"data": "x" * 60}
        for alias in ("echolog", "echo"):
            result = v.execute(alias, "echo", params)
            assert result["credential"]["fields"]["key"] == "[REDACTED]", result
        n = 200 if smoke else 5000
        rounds = 3 if smoke else 15
        cpu = time.thread_time
        a, b, ratio = paired(lambda: v.execute("echolog", "echo", params), theirs, n, rounds, cpu)
        plain, _, _ = paired(lambda: v.execute("echo", "echo", params), theirs, n, 3, cpu)
    res.add(
        "execute, echo action that logs once (secret echoed, scrubbed)",
        a * 1e6,
        "µs",
        note=f"CPU time; the same echo without the log call: {plain * 1e6:.1f} µs",
    )
    res.add(
        "execute with one log call vs Extism bare call",
        ratio,
        "x",
        1.0,
        note=f"Extism's bare echo in the same rounds: {b * 1e6:.1f} µs; median of rounds",
    )


# --- many threads, one plugin ----------------------------------------------------------------------


def throughput(call: Callable[[], object], threads: int, n: int) -> float:
    """Calls per second when ``threads`` threads each make ``n`` calls of ``call`` at once."""
    if threads == 1:
        t = time.perf_counter()
        for _ in range(n):
            call()
        return n / (time.perf_counter() - t)
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work() -> None:
        start.wait()
        try:
            for _ in range(n):
                call()
        except BaseException as exc:  # reported below: a failed call must not look fast
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for th in pool:
        th.start()
    start.wait()
    t = time.perf_counter()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - t
    if errors:
        raise errors[0]
    return threads * n / elapsed


def scaling(call: Callable[[], object], n: int, rounds: int, threads: int = 8) -> float:
    """Median over alternating rounds of (throughput of ``threads`` threads) / (of one)."""
    for _ in range(max(3, n // 10)):
        call()
    ratios = []
    for _ in range(rounds):
        one = throughput(call, 1, n)
        many = throughput(call, threads, n)
        ratios.append(many / one)
    return median(ratios)


def thread_rows(engine: str, smoke: bool) -> list[tuple[str, float, str, float | None, str]]:
    """(name, value, unit, goal, note) of the threads rows for ``engine``, measured here."""
    from vultrino.core import Vultrino

    plugins = echo_plugins(("echo", "abi2_echo.wat"), ("spin", "abi2_spin.wat"))
    rows: list[tuple[str, float, str, float | None, str]] = []
    with home_with(plugins, engine=engine) as home, Vultrino.open(home, PASSWORD) as v:
        for alias in ("echo", "spin"):
            v.add_credential(alias, f"plugin:{alias}:key", {"key": SECRET})
        params = {"data": "x" * 60}
        rounds = 2 if smoke else 5
        for alias, n, goal, what in (
            ("echo", 50 if smoke else 2000, 1.0, "trivial echo"),
            ("spin", 3 if smoke else 60, 1.7, "echo after ~1-2 ms of guest work"),
        ):

            def call(alias: str = alias) -> object:
                return v.execute(alias, "echo", params)

            call()
            t = time.perf_counter()
            for _ in range(n):
                call()
            per = (time.perf_counter() - t) / n
            ratio = scaling(call, n, rounds)
            rows.append(
                (
                    f"{engine}: 8 threads calling one plugin, {what}, vs one thread",
                    ratio,
                    "x",
                    goal,
                    f"throughput ratio, median of {rounds} alternating rounds; one call "
                    f"{per * 1e6:.0f} µs",
                )
            )
    return rows


def bench_threads(res: Any, smoke: bool) -> None:
    """8 threads calling one plugin through ``Vultrino.execute``: throughput against one
    thread's, for a trivial call and one that spends a millisecond or two in the guest, on
    both engines (wasmer's under ``.venv310``); Extism's own figure as the reference."""
    theirs = extism_echo()
    if theirs is not None:
        ratio = scaling(theirs, 50 if smoke else 2000, 2 if smoke else 5)
        res.add(
            "extism: 8 threads calling one plugin, trivial echo, vs one thread",
            ratio,
            "x",
            note="the reference: Extism's Python host, one shared Plugin",
        )
    for row in [*thread_rows("wasmtime", smoke), *child_rows("threads", smoke)]:
        res.add(*row[:3], goal=row[3], note=row[4], at_least=True)


# --- wasmer, from the Python 3.10 venv ---------------------------------------------------------------

PY310 = ROOT / ".venv310" / "bin" / "python"


def child_rows(part: str, smoke: bool) -> list[list[Any]]:
    """Rows a part measures under ``.venv310`` (wasmer), as a child process of this run."""
    if not PY310.exists():
        print("  .venv310 missing: wasmer rows skipped (bash scripts/setup.sh)", file=sys.stderr)
        return []
    cmd = [str(PY310), str(Path(__file__)), "--child", part, *(["--smoke"] if smoke else [])]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    rows: list[list[Any]] = json.loads(out)
    return rows


def child(part: str, smoke: bool) -> None:
    """The child side of :func:`child_rows` (and of the paired wasmer rounds)."""
    if part == "threads":
        print(json.dumps(thread_rows("wasmer", smoke)))
    elif part == "rounds":
        serve_rounds()


def serve_rounds() -> None:
    """Wasmer's side of paired rounds: a line with N on stdin runs N calls of ``execute`` of
    the echo action and answers with the CPU seconds per call; an empty line ends."""
    from vultrino.core import Vultrino

    plugins = echo_plugins(("echo", "abi2_echo.wat"))
    with home_with(plugins, engine="wasmer") as home, Vultrino.open(home, PASSWORD) as v:
        v.add_credential("echo", "plugin:echo:key", {"key": SECRET})
        params = {"data": "x" * 60}
        result = v.execute("echo", "echo", params)
        assert result["credential"]["fields"]["key"] == "[REDACTED]", result
        print("ready", flush=True)
        for line in sys.stdin:
            if not line.strip():
                break
            n = int(line)
            t = time.thread_time()
            for _ in range(n):
                v.execute("echo", "echo", params)
            print((time.thread_time() - t) / n, flush=True)


def bench_wasmer(res: Any, smoke: bool) -> None:
    """``Vultrino.execute`` of the echo action on the wasmer engine (in a ``.venv310`` child
    process) against Extism's bare echo (here), in alternating rounds of CPU time."""
    theirs = extism_echo()
    if theirs is None or not PY310.exists():
        print("  extism or .venv310 missing: wasmer's facade row skipped", file=sys.stderr)
        return
    proc = subprocess.Popen(
        [str(PY310), str(Path(__file__)), "--child", "rounds"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        n = 200 if smoke else 5000
        rounds = 3 if smoke else 15
        ours: list[float] = []
        refs: list[float] = []
        for k in range(rounds + 1):
            proc.stdin.write(f"{n}\n")
            proc.stdin.flush()
            mine = float(proc.stdout.readline())
            t = time.thread_time()
            for _ in range(n):
                theirs()
            ref = (time.thread_time() - t) / n
            if k:  # the first round warms both up
                ours.append(mine)
                refs.append(ref)
        proc.stdin.write("\n")
        proc.stdin.flush()
    finally:
        proc.wait(timeout=60)
    res.add(
        "wasmer: execute (full facade), ~100 B echo",
        median(ours) * 1e6,
        "µs",
        note="CPU time; Python 3.10 (wasmer-python has no newer wheels)",
    )
    res.add(
        "wasmer: execute (full facade) vs Extism bare call",
        median([a / b for a, b in zip(ours, refs, strict=True)]),
        "x",
        1.0,
        note=f"Extism's bare echo (Python 3.11) in alternating rounds: {median(refs) * 1e6:.1f} µs",
    )


# --- the run -------------------------------------------------------------------------------------

PARTS: dict[str, Callable[[Any, bool], None]] = {
    "http": bench_http,
    "log": bench_log,
    "wasmer": bench_wasmer,
    "threads": bench_threads,
}


def run(res: Any, smoke: bool, only: set[str] | None = None) -> None:
    for name, part in PARTS.items():
        if only is None or name in only:
            print(f"hot paths: {name}", file=sys.stderr, flush=True)
            part(res, smoke)


def main() -> None:
    from benchmarks.run import Results

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", help=f"comma-separated parts: {', '.join(PARTS)}")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # run under .venv310 by this script
    args = ap.parse_args()
    if args.child:
        child(args.child, args.smoke)
        return
    only = set(args.only.split(",")) if args.only else None
    res = Results()
    run(res, args.smoke, only)
    print(json.dumps([f.__dict__ for f in res.figures], indent=1, ensure_ascii=False))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
