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
    assert list(records[0]) == [
        "ts",
        *("alias", "plugin", "action", "outcome", "duration_ms"),
        *("seq", "prev"),
    ]
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


# --- the chain and the signed head -----------------------------------------------------------


def _sha(line: bytes) -> str:
    import hashlib

    return hashlib.sha256(line).hexdigest()


class _Signer:
    """A stand-in for the store's key: a fixed signature; remembers what it signed."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def __call__(self, message: bytes) -> tuple[bytes, bytes]:
        self.messages.append(message)
        return b"s" * 64, b"k" * 32

    @staticmethod
    def check(key: bytes, message: bytes, sig: bytes) -> bool:
        return key == b"k" * 32 and sig == b"s" * 64


def test_each_record_names_its_line_number_and_the_hash_of_the_line_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for i in range(3):
        log.append(n=i)
    log.close()
    raw = path.read_bytes().splitlines(keepends=True)
    recs = [json.loads(line) for line in raw]
    assert [r["seq"] for r in recs] == [1, 2, 3]
    assert recs[0]["prev"] == audit.GENESIS
    assert [r["prev"] for r in recs[1:]] == [_sha(raw[0]), _sha(raw[1])]
    assert not audit.head_path(path).exists()  # no signer, no head


def test_writers_sharing_a_file_continue_each_others_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    a, b = AuditLog(path), AuditLog(path)
    for i in range(6):
        (a if i % 2 else b).append(n=i)
    a.close()
    b.close()
    verdict = audit.verify(path, _Signer.check)
    assert verdict.ok and verdict.records == 6 and verdict.chain_start == 1


def test_a_torn_last_line_is_completed_and_reported_by_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    append_record(path, n=1)
    with path.open("ab") as fh:
        fh.write(b'{"ts":"2026')  # a write cut short (disk full)
    append_record(path, n=3)
    raw = path.read_bytes().splitlines(keepends=True)
    assert len(raw) == 3 and json.loads(raw[2])["seq"] == 3
    assert json.loads(raw[2])["prev"] == _sha(raw[1])
    verdict = audit.verify(path, _Signer.check)
    assert (verdict.line, verdict.problem) == (2, "malformed")


def test_the_head_is_signed_on_close_and_every_n_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "CHECKPOINT_RECORDS", 4)
    path = tmp_path / "audit.log"
    signer = _Signer()
    log = AuditLog(path, signer=signer)
    for i in range(5):
        log.append(n=i)
    head = json.loads(audit.head_path(path).read_text())
    assert head["count"] == 4 and len(signer.messages) == 1
    log.close()
    head = json.loads(audit.head_path(path).read_text())
    raw = path.read_bytes().splitlines(keepends=True)
    assert head["count"] == 5 and head["head"] == _sha(raw[4])
    assert signer.messages[-1] == audit.head_message(5, head["head"], head["ts"])
    assert (audit.head_path(path).stat().st_mode & 0o777) == 0o600
    verdict = audit.verify(path, _Signer.check, strict=True)
    assert verdict.ok and verdict.signed_count == 5
    AuditLog(path, signer=signer).close()  # a writer that wrote nothing signs nothing
    assert len(signer.messages) == 2


def test_the_head_is_signed_after_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "CHECKPOINT_SECONDS", 0.0)
    signer = _Signer()
    log = AuditLog(tmp_path / "audit.log", signer=signer)
    log.append(n=1)
    log.append(n=2)
    assert len(signer.messages) == 2
    log.close()


def test_a_signer_without_a_key_or_failing_leaves_the_records_alone(tmp_path: Path) -> None:
    from vultrino.errors import StoreLockedError

    def locked(message: bytes) -> tuple[bytes, bytes]:
        raise StoreLockedError("busy")

    path = tmp_path / "audit.log"
    for signer in (lambda m: None, locked):
        log = AuditLog(path, signer=signer)
        log.append(n=1)
        log.close()
    assert not audit.head_path(path).exists()
    assert audit.verify(path, _Signer.check).ok


def test_verify_of_an_absent_log_is_an_empty_intact_log(tmp_path: Path) -> None:
    verdict = audit.verify(tmp_path / "audit.log", _Signer.check)
    assert verdict.ok and verdict.records == 0 and verdict.message == "the audit log is empty"


def test_a_line_without_chain_fields_after_the_chain_started_is_edited(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    append_record(path, n=1)
    with path.open("a") as fh:
        fh.write('{"ts":"2026-01-01T00:00:00.000+00:00","n":2}\n')
    verdict = audit.verify(path, _Signer.check)
    assert (verdict.line, verdict.problem) == (2, "edited")


def test_tail_pages_newest_first_across_blocks(tmp_path: Path) -> None:
    from vultrino import audit as audit_mod

    path = tmp_path / "audit.log"
    lines = [
        json.dumps({"seq": i, "agent": "a" if i % 3 else "b", "outcome": "ok", "pad": "x" * 200})
        for i in range(1, 2001)
    ]
    path.write_text("\n".join(lines) + "\n" + '{"seq": 2001, "agent": "a"')  # last: half-written
    everything = audit_mod.Filter()
    page, more = audit_mod.tail(path, everything, 5)
    assert [r["seq"] for r in page] == [2000, 1999, 1998, 1997, 1996] and more
    page, more = audit_mod.tail(path, everything, 10, skip=1995)
    assert [r["seq"] for r in page] == [5, 4, 3, 2, 1] and not more
    only_b = audit_mod.Filter(agent="b")
    page, more = audit_mod.tail(path, only_b, 3, skip=1)
    assert [r["seq"] for r in page] == [1995, 1992, 1989] and more
    full = [r["seq"] for r in audit_mod.tail(path, only_b, 10_000)[0]]
    assert full == [i for i in range(2000, 0, -1) if i % 3 == 0]
    assert audit_mod.tail(tmp_path / "none.log", everything, 5) == ([], False)
