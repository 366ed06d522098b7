"""What the `vultrino serve` tests share: a real server process on 127.0.0.1, and a
slow plugin (for calls in flight at SIGTERM).

Nothing here stands in for a real part: ``python -m vultrino serve`` runs in its own process
on a home made by :func:`tests.e2e.mcp_helpers.make_home` (a real sealed store, real wasm
plugins), and the tests talk to it with httpx over loopback TCP.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.e2e.mcp_helpers import _ALLOC, _ECHO_BODY, HANG_GUARD_S, McpHome

_LISTENING = re.compile(r"Vultrino server listening on (\S+)")

#: A plugin whose action spins on the WASI monotonic clock for 1.5 s, then echoes its request.
SLOW_WAT = f"""
(module
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock (param i32 i64 i32) (result i32)))
{_ALLOC}
  (func (export "vultrino:plugin/handler@1.0.0#execute") (param $ptr i32) (param $len i32)
        (result i32)
    (local $out i32) (local $i i32) (local $ret i32) (local $start i64)
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 0)))
    (local.set $start (i64.load (i32.const 0)))
    (block $waited
      (loop $wait
        (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 0)))
        (br_if $waited (i64.ge_u (i64.sub (i64.load (i32.const 0)) (local.get $start))
                                 (i64.const 1500000000)))
        (br $wait)))
{_ECHO_BODY})
)
"""


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    errlog: IO[str]

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def log(self) -> str:
        self.errlog.flush()
        self.errlog.seek(0)
        return self.errlog.read()


@contextlib.contextmanager
def serve(home: McpHome, *args: str) -> Iterator[Server]:
    """``vultrino serve --bind 127.0.0.1:0 ARGS`` on ``home``; yields once it listens, stops
    it with SIGTERM after."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vultrino", "serve", "--bind", "127.0.0.1:0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errlog,
            env=home.env(),
        )
        server = None
        try:
            deadline = time.monotonic() + HANG_GUARD_S
            while server is None:
                if proc.poll() is not None:
                    errlog.seek(0)
                    raise RuntimeError(f"the server exited early: {errlog.read()}")
                if time.monotonic() > deadline:
                    raise TimeoutError("the server did not start")
                errlog.seek(0)
                found = _LISTENING.search(errlog.read())
                if found:
                    server = Server(found.group(1), proc, errlog)
                else:
                    time.sleep(0.05)
            yield server
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=HANG_GUARD_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()


def cli_json(home: McpHome, *args: str) -> object:
    r = home.cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def make_key(home: McpHome, name: str, role: str, *extra: str) -> str:
    r = home.cli("key", "create", name, "--role", role, *extra)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def audit_records(home: McpHome) -> list[dict[str, object]]:
    path = Path(home.root) / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
