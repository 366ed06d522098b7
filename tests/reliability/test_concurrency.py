"""Many writers and many callers at once: nothing lost, nothing mixed up (``parallel.py``).

1. Three API processes and two CLI workers add, replace and remove credentials in one store
   at the same time; every acknowledged operation must show in the final store, each
   credential holding one whole write.
2. One real MCP server with four plugins gets 60 ``tools/call`` requests written before any
   answer is read; every answer must be the right one for its request id (hmac signatures are
   checked against Python's own hmac).
"""

from __future__ import annotations

from pathlib import Path

from tests.leakcheck import LeakCheck
from tests.reliability import parallel
from vultrino.core import Vultrino
from vultrino.store import KdfParams

API_WORKERS = 3
CLI_WORKERS = 2
OPS = 16  # per worker
CALLS = 60


def test_concurrent_adds_replaces_and_removes_lose_nothing(
    isolated_home: Path, leakcheck: LeakCheck
) -> None:
    with Vultrino.init(isolated_home, parallel.PASSWORD, kdf=KdfParams.minimal()):
        pass
    result = parallel.credential_storm(
        isolated_home, api_workers=API_WORKERS, cli_workers=CLI_WORKERS, ops=OPS
    )
    assert result.problems == []
    assert result.operations == (API_WORKERS + CLI_WORKERS) * OPS
    assert any(op["op"] == "remove" for ops in result.acked.values() for op in ops)
    leakcheck.add(*result.secrets)
    for where, text in result.outputs:
        leakcheck.scan(text, where)


def test_the_judge_catches_a_lost_or_mixed_write() -> None:
    """The storm's judge must be able to fail: a lost write, a resurrected alias, a shared
    alias holding half of one write and half of another."""
    acked = {
        "w": [
            {"op": "add", "alias": "a", "value": "1", "description": "d1"},
            {"op": "add", "alias": "b", "value": "2", "description": "d2"},
            {"op": "remove", "alias": "b"},
            {"op": "add", "alias": "shared", "value": "s1", "description": "x1"},
        ],
        "v": [{"op": "add", "alias": "shared", "value": "s2", "description": "x2"}],
    }
    assert parallel.judge_storm(acked, {"a": ("1", "d1"), "shared": ("s2", "x2")}) == []
    assert parallel.judge_storm(acked, {"shared": ("s1", "x1")})  # a lost
    assert parallel.judge_storm(acked, {"a": ("1", "d1"), "b": ("2", "d2"), "shared": ("s1", "x1")})
    assert parallel.judge_storm(acked, {"a": ("1", "d1"), "shared": ("s1", "x2")})
    assert parallel.judge_storm(acked, {"a": ("2", "d1"), "shared": ("s1", "x1")})


def test_sixty_concurrent_tool_calls_each_get_their_own_answer(
    tmp_path: Path, leakcheck: LeakCheck
) -> None:
    home = parallel.make_mcp_home(tmp_path / "home")
    result = parallel.mcp_burst(home, CALLS)
    assert result.alive
    assert result.wrong == []
    assert result.leaks == []
    assert sum(parallel.plan_call(i)[0] == "hang_forever" for i in range(CALLS)) >= 4
    leakcheck.add(*home.secrets)
