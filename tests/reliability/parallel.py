"""Many writers and many callers at once, as reusable harnesses (the tests and
``scripts/evidence.py`` both run them).

:func:`credential_storm`: several processes add, replace and remove credentials in one home at
the same time — some through the Python API (one long-lived facade each), some through the CLI
(real CLI processes forked from a warm interpreter, one command each). The final store must
reflect every acknowledged operation, each credential holding exactly the value and
description of one whole write.

:func:`mcp_burst`: one real ``vultrino mcp`` server with several plugins (two echo plugins, the
first-party hmac plugin, one that never returns) gets many ``tools/call`` requests written
before any answer is read; every answer must be the right one for its request id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e import mcp_helpers
from tests.e2e.mcp_helpers import ECHO_WAT, HANG_WAT, McpHome, RawClient
from tests.leakcheck import LeakCheck
from tests.reliability._forkserver import ForkServer

PASSWORD = "concurrency store password 7e21"
HANG_GUARD_S = 300.0  # a guard against a hung worker, never a performance assertion

# --- credentials -------------------------------------------------------------------------------

#: A worker through the Python API: one facade for its whole life, a seeded mix of adds,
#: replaces and removes of its own aliases plus replaces of one alias every worker shares.
#: Prints one JSON line per acknowledged operation.
API_WORKER = r"""
import json, random, sys
from vultrino.core import Vultrino

home, password, worker, ops, secret = sys.argv[1:6]
rng = random.Random(worker)
live = []
with Vultrino.open(home, password) as v:
    for i in range(int(ops)):
        roll = rng.random()
        if live and roll < 0.25:
            alias = live.pop(rng.randrange(len(live)))
            v.remove_credential(alias)
            print(json.dumps({"op": "remove", "alias": alias}), flush=True)
            continue
        if roll < 0.35:
            alias = "shared"
        elif live and roll < 0.5:
            alias = live[rng.randrange(len(live))]
        else:
            alias = f"{worker}-{i}"
        value, desc = f"{secret}-{worker}-{i}", f"by {worker} #{i}"
        v.add_credential(alias, "api_key", {"key": value}, desc, replace=True)
        if alias != "shared" and alias not in live:
            live.append(alias)
        print(json.dumps({"op": "add", "alias": alias, "value": value, "description": desc}),
              flush=True)
"""


def cli_ops(worker: str, ops: int, tmp: Path) -> list[tuple[list[str], dict[str, Any]]]:
    """The commands of a CLI worker and the operation each acknowledges (exit 0): adds,
    replaces of the shared alias, and removes of the worker's oldest live credential. Secret
    values are read from files (``--field key=@FILE``), as the docs recommend."""
    plan: list[tuple[list[str], dict[str, Any]]] = []
    live: list[str] = []
    for i in range(ops):
        if i % 4 == 3 and live:
            gone = live.pop(0)
            plan.append((["remove", gone, "--yes"], {"op": "remove", "alias": gone}))
            continue
        alias = "shared" if i % 5 == 4 else f"{worker}-{i}"
        value, desc = f"{worker}-secret-{i}-c0ffee", f"by {worker} #{i}"
        key_file = tmp / f"{worker}-{i}.key"
        key_file.write_text(value, encoding="utf-8")
        args = ["add", "--alias", alias, "--type", "api_key", f"--field=key=@{key_file}"]
        args += ["--description", desc, "--replace"]
        plan.append((args, {"op": "add", "alias": alias, "value": value, "description": desc}))
        if alias != "shared":
            live.append(alias)
    return plan


@dataclass
class StormResult:
    """What a credential storm acknowledged and what the store holds afterwards."""

    acked: dict[str, list[dict[str, Any]]]
    problems: list[str] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # workers' stderr, CLI output

    @property
    def operations(self) -> int:
        return sum(len(ops) for ops in self.acked.values())

    @property
    def secrets(self) -> list[str]:
        return [
            PASSWORD,
            *(op["value"] for ops in self.acked.values() for op in ops if "value" in op),
        ]


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    env["VULTRINO_HOME"] = str(home)
    env["VULTRINO_PASSWORD"] = PASSWORD
    return env


def credential_storm(home: Path, *, api_workers: int, cli_workers: int, ops: int) -> StormResult:
    """Run the workers together on ``home`` (a store opened by :data:`PASSWORD`) and judge."""
    from vultrino.core import Vultrino

    tmp = Path(tempfile.mkdtemp(prefix="storm-"))
    api = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                API_WORKER,
                str(home),
                PASSWORD,
                f"api{w}",
                str(ops),
                "api-secret",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(api_workers)
    ]
    servers = {f"cli{w}": ForkServer(env_for(home)) for w in range(cli_workers)}
    plans = {w: cli_ops(w, ops, tmp) for w in servers}
    logs = {w: tmp / f"{w}.log" for w in servers}
    result = StormResult({w: [] for w in servers})
    # Each CLI worker runs its commands one after another in its own fork server, all while
    # the API workers run; step every CLI worker in turn.
    for step in range(ops):
        for w, srv in servers.items():
            srv.start(plans[w][step][0], output=str(logs[w]))
        for w, srv in servers.items():
            status = srv.wait()
            if status == ("exit", 0):
                result.acked[w].append(plans[w][step][1])
            else:
                result.problems.append(f"{w} step {step} ended with {status}")
    for srv in servers.values():
        srv.close()
    for n, proc in enumerate(api):
        out, err = proc.communicate(timeout=HANG_GUARD_S)
        if proc.returncode != 0:
            result.problems.append(f"api{n} exited with {proc.returncode}: {err[-500:]}")
        result.acked[f"api{n}"] = [json.loads(line) for line in out.splitlines()]
        result.outputs.append((f"api{n} stderr", err))
    for w, log in logs.items():
        result.outputs.append((f"{w} output", log.read_text(encoding="utf-8")))
    with Vultrino.open(home, PASSWORD) as v:
        stored = {c.alias: (c.fields.get("key"), c.description) for c in v._s.store.credentials()}
    result.problems += judge_storm(result.acked, stored)
    return result


def judge_storm(
    acked: dict[str, list[dict[str, Any]]], stored: dict[str, tuple[Any, str]]
) -> list[str]:
    """Compare the store with what the acknowledged operations imply: each worker's own
    aliases replayed in its order, and for the shared alias one whole write of someone's."""
    own: dict[str, tuple[str, str]] = {}
    shared: set[tuple[str, str]] = set()
    for ops in acked.values():
        for op in ops:
            if op["alias"] == "shared":
                shared.add((op["value"], op["description"]))
            elif op["op"] == "add":
                own[op["alias"]] = (op["value"], op["description"])
            else:
                own.pop(op["alias"], None)
    problems = []
    expected = set(own) | ({"shared"} if shared else set())
    if set(stored) != expected:
        lost, extra = sorted(expected - set(stored)), sorted(set(stored) - expected)
        problems.append(f"aliases lost: {lost}; aliases that should be gone: {extra}")
    for alias, want in own.items():
        if alias in stored and stored[alias] != want:
            problems.append(f"{alias} holds another write than its last acknowledged one")
    if shared and stored.get("shared") not in shared:
        problems.append("the shared alias holds a value and description of different writes")
    return problems


# --- MCP ---------------------------------------------------------------------------------------

HMAC_KEYS = {"hmac-a": "hmac key A 3d0c5b9a11f2", "hmac-b": "hmac key B 77e1aa0f39c4"}


def make_mcp_home(root: Path) -> McpHome:
    """Echo, echo2 and hang plugins (mcp_helpers), the shipped hmac plugin, two hmac keys."""
    from vultrino.core import Vultrino
    from vultrino.plugins.install._shipped import first_party

    home = mcp_helpers.make_home(
        root,
        plugins=(
            ("echo", ECHO_WAT, "echo_message"),
            ("echo2", ECHO_WAT, "echo2_message"),
            ("hang", HANG_WAT, "hang_forever"),
        ),
        config="[limits]\ndeadline_s = 1\n",
    )
    shipped = first_party("hmac")
    assert shipped is not None
    with Vultrino.open(home.root, mcp_helpers.PASSWORD) as v:
        v.install_plugin(str(shipped))
        for alias, key in HMAC_KEYS.items():
            v.add_credential(alias, "plugin:hmac:hmac_key", {"key": key})
    home.secrets.extend(HMAC_KEYS.values())
    return home


def plan_call(i: int) -> tuple[str, dict[str, Any], Any]:
    """Request ``i``: the tool, its arguments, and the answer it must get (None: the
    never-returning plugin's own deadline error)."""
    message = f"message #{i} ✓"
    kind = i % 6
    if kind in (0, 1):
        alias = "hmac-a" if kind == 0 else "hmac-b"
        digest = hmac.new(HMAC_KEYS[alias].encode(), message.encode(), hashlib.sha256)
        signed: dict[str, Any] = {"signature": digest.hexdigest(), "algorithm": "sha256"}
        return "hmac_sign", {"credential": alias, "message": message}, signed
    if kind == 5 and i % 12 == 5:
        return "hang_forever", {"credential": "hang-one", "message": message}, None
    plugin = "echo" if kind in (2, 3) else "echo2"
    credential = {"alias": f"{plugin}-one", "type": "key", "fields": {"token": "[REDACTED]"}}
    expected: dict[str, Any] = {
        "action": "echo",
        "params": {"message": message, "n": i},
        "credential": credential,
    }
    return (
        f"{plugin}_message",
        {"credential": f"{plugin}-one", "message": message, "n": i},
        expected,
    )


@dataclass
class BurstResult:
    calls: int
    wrong: list[str]
    alive: bool
    leaks: list[str]


def mcp_burst(home: McpHome, calls: int) -> BurstResult:
    """Write ``calls`` tools/call requests to one server before reading any answer; judge."""
    check = LeakCheck()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        with RawClient(home, errlog) as client:
            client.handshake("2025-06-18")
            plans = {1000 + i: plan_call(i) for i in range(calls)}
            for rid, (tool, args, _) in plans.items():
                client.send(
                    {
                        "jsonrpc": "2.0",
                        "id": rid,
                        "method": "tools/call",
                        "params": {"name": tool, "arguments": args},
                    }
                )
            answers = {rid: client.wait_for(lambda m, r=rid: m.get("id") == r) for rid in plans}
            alive = client.proc.poll() is None
        mcp_helpers.scan_log(check, home, errlog, ("answers", answers))
    wrong = []
    for rid, (tool, _, expected) in plans.items():
        result = answers[rid].get("result", {})
        text = "".join(c.get("text", "") for c in result.get("content", []))
        if expected is None:
            # its own deadline, or — when every instance of the hanging plugin is already held
            # by the other hanging calls — the busy refusal of that plugin; never another's answer
            ok = (
                bool(result.get("isError"))
                and "'hang'" in text
                and ("deadline" in text or "none came free" in text)
            )
        else:
            ok = not result.get("isError") and result.get("structuredContent", text) == expected
        if not ok:
            wrong.append(f"{rid} {tool}: {text[:200]}")
    return BurstResult(calls, wrong, alive, check.findings)
