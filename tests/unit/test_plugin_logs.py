"""The per-plugin log files: JSON lines, 0600, rotated by size, read back in order."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

from vultrino.plugins.logs import PluginLogs


def test_lines_are_appended_as_json_and_read_back_in_order(tmp_path: Path) -> None:
    logs = PluginLogs(tmp_path / "logs")
    sink = logs.sink("acme")
    for i in range(5):
        sink("warn" if i % 2 else "info", f"line {i}")
    sink("shout", "an unknown level is kept as info")
    logs.close()
    path = tmp_path / "logs" / "acme.log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"time", "level", "message"} and first["message"] == "line 0"
    tail = logs.tail("acme", 3)
    assert [(x.level, x.message) for x in tail] == [
        ("warn", "line 3"),
        ("info", "line 4"),
        ("info", "an unknown level is kept as info"),
    ]
    assert logs.tail("other", 3) == [] and not logs.exists("other")


def test_the_file_is_rotated_by_size_and_the_total_stays_bounded(tmp_path: Path) -> None:
    logs = PluginLogs(tmp_path, max_bytes=2000)
    for i in range(400):
        logs.write("acme", "info", f"message number {i:04d} " + "x" * 40)
    logs.close()
    current, rotated = tmp_path / "acme.log", tmp_path / "acme.log.1"
    assert rotated.exists()
    assert not current.exists() or current.stat().st_size < 2000  # absent right after a rotation
    assert rotated.stat().st_size < 2000 + 200  # one line past the limit at most
    lines = logs.tail("acme", 1000)
    numbers = [int(x.message.split()[2]) for x in lines]
    assert numbers == sorted(numbers) and numbers[-1] == 399  # the newest kept, in order
    assert len(numbers) < 400  # the oldest are gone


def test_follow_yields_the_last_lines_then_new_ones_through_a_rotation(tmp_path: Path) -> None:
    logs = PluginLogs(tmp_path, max_bytes=600)  # about nine lines a file: one rotation below
    logs.write("acme", "info", "before 1")
    logs.write("acme", "info", "before 2")
    give_up = time.monotonic() + 60  # a guard against a hang, never a timing assertion
    follow = logs.follow("acme", last=1, stop=lambda: time.monotonic() > give_up)
    assert next(follow).message == "before 2"
    logs.write("acme", "error", "after")
    assert next(follow).message == "after"
    for i in range(10):  # past the size limit: the file is rotated under the follower
        logs.write("acme", "info", f"more {i}")
    got = [next(follow).message for _ in range(10)]
    follow.close()
    logs.close()
    assert got == [f"more {i}" for i in range(10)]
    assert (tmp_path / "acme.log.1").exists()


def test_a_line_that_is_not_json_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "acme.log").write_text(
        'garbage\n{"time": "t", "level": "info", "message": "ok"}\n[1]\n'
    )
    assert [x.message for x in PluginLogs(tmp_path).tail("acme", 10)] == ["ok"]
