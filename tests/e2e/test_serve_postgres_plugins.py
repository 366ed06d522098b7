"""Plugins shared by `vultrino serve` replicas on one PostgreSQL store (docs/scaling.md,
"Plugins"): real server processes, the real CLI, a real database (tests/pgcluster.py), httpx
and the MCP SDK over loopback.

Each replica has a home of its own; replica B never sees replica A's plugins directory. A
plugin installed with the CLI on A's home runs on B, an MCP session on B hears
tools/list_changed, and once it is removed on A, B refuses calls to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.mcp_helpers import ECHO_WAT, HANG_GUARD_S, McpHome, make_home, write_plugin
from tests.e2e.serve_helpers import Server, make_key, serve

LATE_TOKEN = "late-token-REPLICA-SECRET-41c9"
#: How long a change on A may take to reach B (NOTIFY, then B's watcher's next refresh, every
#: 0.5 s); a bound for the wait, never a timing assertion.
REACH_S = 10.0


@pytest.fixture
def replicas(isolated_home: Path, pg_url: str, tmp_path: Path) -> Iterator[list[McpHome]]:
    """Two homes whose config points at one database (the first home's store migrated in);
    the second home starts with no plugins at all."""
    first = make_home(isolated_home)
    r = first.cli("store", "migrate", "--to", pg_url)
    assert r.returncode == 0, r.stderr
    (first.root / "credentials.enc").unlink()
    config = f'[store]\nurl = "{pg_url}"\n'
    (first.root / "config.toml").write_text(config)
    second = tmp_path / "replica2"
    second.mkdir()
    (second / "config.toml").write_text(config)
    yield [first, McpHome(second, first.password_file, first.secrets)]


def _late(server: Server, key: str, message: str) -> httpx.Response:
    return httpx.post(
        f"{server.api}/execute",
        headers={"Authorization": f"Bearer {key}"},
        json={"credential": "late-one", "action": "echo", "params": {"message": message}},
        timeout=HANG_GUARD_S,
    )


def _until(server: Server, key: str, ok: bool) -> httpx.Response:
    """Call the plugin's action on ``server`` until it answers 200 (``ok``) or stops doing so,
    for at most REACH_S."""
    deadline = time.monotonic() + REACH_S
    while True:
        r = _late(server, key, "hello from B")
        if (r.status_code == 200) == ok or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_a_plugin_installed_on_one_replica_runs_on_another_until_removed(
    replicas: list[McpHome], tmp_path: Path
) -> None:
    a, b = replicas
    key = make_key(a, "shared", "admin")
    src = write_plugin(tmp_path / "src", "late", ECHO_WAT, tool="late_echo")
    seen: dict[str, Any] = {}
    with ExitStack() as stack:
        server_a = stack.enter_context(serve(a))
        server_b = stack.enter_context(serve(b))
        assert not (b.root / "plugins" / "late").exists()

        async def main() -> None:
            changed = anyio.Event()

            async def on_message(message: Any) -> None:
                if isinstance(message, types.ToolListChangedNotification):
                    changed.set()

            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as c,
                streamable_http_client(f"{server_b.url}/mcp", http_client=c) as (read, write),
                ClientSession(read, write, message_handler=on_message) as session,
            ):
                await session.initialize()
                before = {t.name for t in (await session.list_tools()).tools}
                assert "late_echo" not in before
                # installed with the CLI on A's home, while A's server runs on it too
                done = await anyio.to_thread.run_sync(a.cli, "plugin", "install", str(src))
                assert done.returncode == 0, done.stderr
                with anyio.fail_after(REACH_S):
                    await changed.wait()
                seen["tools"] = {t.name for t in (await session.list_tools()).tools}

        anyio.run(main)
        assert "late_echo" in seen["tools"]
        added = a.cli(
            "add", "--alias", "late-one", "--type", "plugin:late:key",
            "--field", f"token={LATE_TOKEN}",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        r = _until(server_b, key, ok=True)
        assert r.status_code == 200, r.text
        assert r.json()["result"]["params"] == {"message": "hello from B"}
        assert LATE_TOKEN not in r.text
        assert (b.root / "plugins" / "late" / "late.wasm").is_file()  # B's own copy
        # A runs it too (it installed it), from its own directory
        assert _late(server_a, key, "on A").status_code == 200

        removed = a.cli("plugin", "remove", "late", "--yes")
        assert removed.returncode == 0, removed.stderr
        r = _until(server_b, key, ok=False)
        assert r.status_code != 200, r.text
        assert "late" in r.json()["error"]
        assert not (b.root / "plugins" / "late").exists()
        assert server_b.proc.poll() is None
