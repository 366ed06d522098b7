"""A running `vultrino mcp` drops the tools of a plugin whose installed module changed on disk.

The plugin is installed with the real CLI (so its ``.installed.json`` records the module's size
and sha256), a real server runs on the home, the SDK's client lists the tool, then the module's
bytes are changed in place: the server must announce ``notifications/tools/list_changed`` and no
longer offer the tool, and `plugin list` must show the plugin broken.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.e2e.mcp_helpers import (
    HANG_GUARD_S,
    LATE_SECRET,
    McpHome,
    install_late_plugin,
    make_home,
    scan_log,
    sdk_stdio,
)
from tests.leakcheck import LeakCheck


@pytest.fixture
def errlog() -> Iterator[IO[str]]:
    with tempfile.TemporaryFile("w+", encoding="utf-8") as f:
        yield f


@pytest.mark.parametrize("change", ["flipped-byte", "truncated"])
def test_a_running_server_drops_the_tools_of_a_corrupted_module(
    isolated_home: Path, errlog: IO[str], leakcheck: LeakCheck, tmp_path: Path, change: str
) -> None:
    home: McpHome = make_home(isolated_home)
    leakcheck.add(LATE_SECRET, *home.secrets)
    installed = install_late_plugin(home, tmp_path)
    assert installed.returncode == 0, installed.stderr
    module = home.root / "plugins" / "late" / "late.wasm"
    seen: dict[str, Any] = {}

    def corrupt() -> None:
        data = bytearray(module.read_bytes())
        if change == "flipped-byte":
            data[len(data) // 2] ^= 0x01
        else:
            del data[-8:]
        module.write_bytes(bytes(data))

    async def main() -> None:
        with anyio.fail_after(HANG_GUARD_S):
            async with sdk_stdio(home, errlog) as s:
                seen["before"] = {t.name for t in (await s.session.list_tools()).tools}
                await anyio.to_thread.run_sync(corrupt)
                await s.changed.wait()
                seen["after"] = {t.name for t in (await s.session.list_tools()).tools}
                with pytest.raises(MCPError) as refused:  # an unknown tool is a protocol error
                    await s.session.call_tool("late_echo", {"message": "hi"})
                seen["refused"] = str(refused.value)

    anyio.run(main)
    assert "late_echo" in seen["before"]
    assert "late_echo" not in seen["after"]
    assert {"list_credentials", "echo_message"} <= seen["after"]  # the others stay
    assert "late_echo" in seen["refused"]
    listed = {r["name"]: r for r in json.loads(home.cli("plugin", "list", "--json").stdout)}
    assert listed["late"]["status"] == "broken"
    assert "changed after it was installed" in listed["late"]["reason"]
    scan_log(leakcheck, home, errlog)
