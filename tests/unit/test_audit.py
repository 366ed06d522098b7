"""The audit log writer: one JSON line per record, the descriptor kept open, rotation followed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vultrino import audit
from vultrino.audit import AuditLog, append_record, read_records


def test_records_are_json_lines_with_a_utc_timestamp_first(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.append(alias='a"\n\u00e9', plugin=None, action="x", outcome="ok", duration_ms=0.125)
    log.append(alias="b", nested={"k": [1, True]}, count=3, flag=False)
    log.close()
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert list(records[0]) == ["ts", "alias", "plugin", "action", "outcome", "duration_ms"]
    assert records[0]["alias"] == 'a"\n\u00e9' and records[0]["plugin"] is None
    assert records[0]["duration_ms"] == 0.125
    assert records[1]["nested"] == {"k": [1, True]} and records[1]["count"] == 3
    assert records[0]["ts"].endswith("+00:00") and len(records[0]["ts"]) == 29
    assert all(line.isascii() for line in lines)
    assert (path.stat().st_mode & 0o777) == 0o600


def test_the_descriptor_stays_open_between_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path / "audit.log")
    opened: list[object] = []
    real_open = os.open
    monkeypatch.setattr(audit.os, "open", lambda *a: opened.append(a) or real_open(*a))
    for i in range(50):
        log.append(n=i)
    log.close()
    assert len(opened) == 1
    assert [r["n"] for r in read_records(tmp_path / "audit.log")] == list(range(50))


def test_a_rotated_log_is_followed_once_the_check_interval_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.append(n=1)
    os.rename(path, tmp_path / "audit.log.1")
    monkeypatch.setattr(audit, "REOPEN_CHECK_SECONDS", 0.0)
    log.append(n=2)
    path.unlink(missing_ok=True)  # deleted outright this time
    log.append(n=3)
    log.close()
    assert [r["n"] for r in read_records(tmp_path / "audit.log.1")] == [1]
    assert [r["n"] for r in read_records(path)] == [3]


def test_append_record_still_opens_and_closes(tmp_path: Path) -> None:
    append_record(tmp_path / "audit.log", alias="a")
    append_record(tmp_path / "audit.log", alias="b")
    assert [r["alias"] for r in read_records(tmp_path / "audit.log")] == ["a", "b"]


def test_values_that_are_not_plain_scalars_are_written_as_bounded_text(tmp_path: Path) -> None:
    class Alias(str):
        pass

    log = tmp_path / "audit.log"
    audit.append_record(
        log,
        alias=Alias("a" * 10_000),
        plugin=object(),
        action=float("nan"),
        outcome="ok",
    )
    record = json.loads(log.read_text())
    assert record["alias"] == "a" * audit.MAX_FIELD_CHARS + "...[10000 characters]"
    assert record["plugin"].startswith("<object object at")
    assert record["action"] == "nan"
    assert len(log.read_bytes()) < 1000


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "0.000"),
        (999, "0.000"),
        (1_000, "0.001"),
        (12_345_678, "12.345"),
        (10**12, "1000000.000"),
    ],
)
def test_millis_text_is_milliseconds_to_the_microsecond_as_a_json_float(
    nanos: int, text: str
) -> None:
    assert audit.millis_text(nanos) == text
    assert isinstance(json.loads(text), float)
