"""MCP over stdio where users feel it: the first useful answer after spawn, and a tools/call.

- spawn → ``tools/list`` answered: a host spawns ``vultrino mcp`` (minimal-KDF home, password
  from a 0600 file), sends ``initialize``, and on its answer ``notifications/initialized`` and
  ``tools/list``; the figure is the time from spawn to the ``tools/list`` answer, p50 of N
  spawns. References in the same run, spawned in turn with it (paired runs): a server in the
  standard library alone (``stdlib_mcp_server.py``: the floor) and the SDK's bare low-level
  server (``bare_mcp_server.py``).
- ``tools/call`` round trip: ``list_credentials`` through the whole pipeline (policy gate,
  scrubbing, an audit record) against the bare SDK server's trivial tool, both servers alive
  at once and measured in alternating blocks; the ratio of the p50s.

The machine may be shared: the paired, alternating runs keep the ratios fair, the absolute
figures are noisy.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OURS = [sys.executable, "-m", "vultrino", "mcp"]
BARE_SDK = [sys.executable, str(HERE / "bare_mcp_server.py")]
FLOOR = [sys.executable, str(HERE / "stdlib_mcp_server.py")]

INITIALIZE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "bench", "version": "0"},
}


@contextmanager
def kdf_home(credentials: int = 3) -> Iterator[dict[str, str]]:
    """A home with the minimal KDF and a few credentials; the server's environment names a
    0600 password file, as `vultrino mcp config` sets it up."""
    sys.path.insert(0, str(ROOT))
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-mcp-"))
    try:
        home, password = root / "home", "bench-password"
        with Vultrino.init(home, password, kdf=KdfParams.minimal()) as v:
            for i in range(credentials):
                v.add_credential(f"cred-{i}", "bearer", {"token": f"t{i}"}, allow=["*"])
        pw = root / "password"
        pw.write_text(password)
        pw.chmod(0o600)
        # An installed Vultrino runs from compiled bytecode (pip writes it at install), so the
        # spawned servers may cache theirs: an inherited PYTHONDONTWRITEBYTECODE would make every
        # spawn recompile every module (about 150 ms more) and measure a case no user has.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("VULTRINO_") and k != "PYTHONDONTWRITEBYTECODE"
        }
        env.update(VULTRINO_HOME=str(home), VULTRINO_PASSWORD_FILE=str(pw), PYTHONPATH=str(ROOT))
        yield env
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Server:
    """A spawned stdio server and a raw JSON-RPC client on its pipes."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        assert self.proc.stdin and self.proc.stdout
        self._in: IO[bytes] = self.proc.stdin
        self._out: IO[bytes] = self.proc.stdout
        self._ids = iter(range(1, 1 << 30))
        self.cmd = cmd

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, rid: int | None = None
    ) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if rid is not None:
            msg["id"] = rid
        if params is not None:
            msg["params"] = params
        self._in.write(json.dumps(msg).encode() + b"\n")
        self._in.flush()

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = next(self._ids)
        self.send(method, params, rid=rid)
        while True:
            line = self._out.readline()
            if not line:
                raise RuntimeError(f"{self.cmd}: the MCP server closed its stdout")
            reply: dict[str, Any] = json.loads(line)
            if reply.get("id") == rid:
                if "result" not in reply:
                    raise RuntimeError(f"{self.cmd}: {method} failed: {reply}")
                return reply

    def open(self) -> float:
        """initialize, initialized, tools/list as a host sends them; seconds from spawn to the
        tools/list answer."""
        self.rpc("initialize", INITIALIZE)
        self.send("notifications/initialized")
        self.rpc("tools/list")
        return time.perf_counter() - self.started

    def close(self) -> None:
        self._in.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def first_answers(env: dict[str, str], n: int) -> dict[str, list[float]]:
    """Spawn → tools/list answered, for each server in turn, ``n`` rounds."""
    out: dict[str, list[float]] = {"ours": [], "sdk": [], "floor": []}
    for cmd in (OURS, BARE_SDK, FLOOR):  # warm-up, not counted: the bytecode cache is written
        warm = Server(cmd, env)
        try:
            warm.open()
        finally:
            warm.close()
    for _ in range(n):
        for name, cmd in (("ours", OURS), ("sdk", BARE_SDK), ("floor", FLOOR)):
            s = Server(cmd, env)
            try:
                out[name].append(s.open())
            finally:
                s.close()
    return out


def round_trips(env: dict[str, str], n: int, block: int = 50) -> tuple[list[float], list[float]]:
    """tools/call round trips on both servers, alive at once, in alternating blocks."""
    ours, sdk = Server(OURS, env), Server(BARE_SDK, env)
    try:
        ours.open()
        sdk.open()
        calls = [
            (ours, {"name": "list_credentials", "arguments": {}}, []),
            (sdk, {"name": "ping", "arguments": {}}, []),
        ]
        for server, params, _ in calls:  # warm-up
            for _ in range(block):
                server.rpc("tools/call", params)
        done = 0
        while done < n:
            for server, params, times in calls:
                for _ in range(block):
                    t = time.perf_counter()
                    server.rpc("tools/call", params)
                    times.append(time.perf_counter() - t)
            done += block
        return calls[0][2], calls[1][2]
    finally:
        ours.close()
        sdk.close()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(res: Any, smoke: bool) -> None:
    spawns = 2 if smoke else 15
    calls = 100 if smoke else 3000
    with kdf_home() as env:
        first = first_answers(env, spawns)
        ours_calls, sdk_calls = round_trips(env, calls)
    ms = {k: statistics.median(v) * 1e3 for k, v in first.items()}
    res.add(
        "mcp: spawn → tools/list answered, p50 (minimal KDF)",
        ms["ours"],
        "ms",
        250.0,
        note=f"{spawns} spawns after one warm-up (bytecode cached, as installed); same run: stdlib JSON-RPC server {ms['floor']:.0f} ms (floor), "
        f"bare SDK server {ms['sdk']:.0f} ms",
    )
    res.add(
        "mcp: spawn → tools/list, stdlib floor server, p50",
        ms["floor"],
        "ms",
        note="benchmarks/stdlib_mcp_server.py",
    )
    res.add(
        "mcp: spawn → tools/list, bare SDK server, p50",
        ms["sdk"],
        "ms",
        note="benchmarks/bare_mcp_server.py: importing the SDK dominates",
    )
    p50, sdk_p50 = pct(ours_calls, 0.5), pct(sdk_calls, 0.5)
    res.add(
        "mcp: tools/call round trip over stdio, p50",
        p50 * 1e3,
        "ms",
        note=f"list_credentials through the pipeline, raw JSON-RPC client; p99 "
        f"{pct(ours_calls, 0.99) * 1e3:.2f} ms",
    )
    res.add(
        "mcp: bare SDK server tools/call, p50",
        sdk_p50 * 1e3,
        "ms",
        note="benchmarks/bare_mcp_server.py: the SDK alone, a trivial tool",
    )
    res.add(
        "mcp: tools/call p50, ratio to the bare SDK server",
        p50 / sdk_p50,
        "x",
        1.1,
        note=f"alternating blocks of 50 on both servers alive at once, {calls} calls each",
    )


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from run import Results  # the harness's table, for a run of this file alone

    run(Results(), "--smoke" in sys.argv)
