"""`vultrino audit verify` in real processes: every way of tampering with the log is named.

The log is written through the facade (each call one record, the head signed with the store's
key when the facade closes), then edited on disk the way an attacker without the store
password could, and checked with `python -m vultrino audit verify`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vultrino import Vultrino
from vultrino.audit import head_message
from vultrino.errors import CredentialNotFoundError
from vultrino.store import KdfParams

PASSWORD = "audit-chain-pw"
BROKEN = 10  # the exit code of a log that fails the check (docs/cli.md)


def _write_calls(home: Path, n: int, tag: str = "c") -> None:
    with Vultrino.open(home, PASSWORD) as v:
        for i in range(n):
            with pytest.raises(CredentialNotFoundError):
                v.execute(f"{tag}-{i}", "request", {"url": "https://example.com/"})


@pytest.fixture
def home(isolated_home: Path) -> Path:
    Vultrino.init(isolated_home, PASSWORD, kdf=KdfParams.minimal()).close()
    _write_calls(isolated_home, 12)
    return isolated_home


def verify(home: Path, *args: str, password: bool = False) -> tuple[int, dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    env["VULTRINO_HOME"] = str(home)
    if password:
        env["VULTRINO_PASSWORD"] = PASSWORD
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", "audit", "verify", "--json", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    return r.returncode, json.loads(r.stdout), r.stderr


def lines(home: Path) -> list[bytes]:
    return (home / "audit.log").read_bytes().splitlines(keepends=True)


def put(home: Path, new: list[bytes]) -> None:
    (home / "audit.log").write_bytes(b"".join(new))


def test_an_untouched_log_verifies_with_its_signed_head(home: Path) -> None:
    code, out, _ = verify(home, "--strict", "--check-key", password=True)
    assert code == 0
    assert out["ok"] and out["records"] == 12 and out["signed_count"] == 12
    assert out["chain_start"] == 1 and out["line"] is None
    assert "12 records, chain intact, last checkpoint at record 12 signed" in out["message"]
    env = {**os.environ, "VULTRINO_HOME": str(home)}
    env.pop("VULTRINO_PASSWORD", None)
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", "audit", "verify"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr  # no password needed
    assert r.stdout.startswith("12 records, chain intact")


def test_an_edited_field_of_a_middle_record_names_that_line(home: Path) -> None:
    old = lines(home)
    old[5] = old[5].replace(b'"c-5"', b'"c-X"')
    put(home, old)
    code, out, _ = verify(home)
    assert code == BROKEN
    assert (out["line"], out["problem"]) == (6, "edited")
    env = {**os.environ, "VULTRINO_HOME": str(home)}
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", "audit", "verify"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert r.returncode == BROKEN and "line 6 (edited)" in r.stderr and not r.stdout


def test_a_deleted_record_names_the_gap(home: Path) -> None:
    old = lines(home)
    put(home, old[:5] + old[6:])
    code, out, _ = verify(home)
    assert code == BROKEN
    assert (out["line"], out["problem"]) == (6, "missing")
    assert "1 record missing before line 6" in out["message"]


def test_swapped_records_are_reported_as_reordered(home: Path) -> None:
    old = lines(home)
    old[5], old[6] = old[6], old[5]
    put(home, old)
    code, out, _ = verify(home)
    assert code == BROKEN
    assert (out["line"], out["problem"]) == (6, "reordered")


def test_a_tail_cut_past_the_signed_head_is_truncation(home: Path) -> None:
    put(home, lines(home)[:9])
    code, out, _ = verify(home)
    assert code == BROKEN
    assert (out["line"], out["problem"]) == (10, "truncated")
    assert "records 10-12 were removed" in out["message"]


def test_a_forged_record_appended_is_caught(home: Path) -> None:
    old = lines(home)
    forged = old[2].replace(b'"c-2"', b'"innocent"')  # a copy: its chain fields are stale
    put(home, [*old, forged])
    code, out, _ = verify(home)
    assert code == BROKEN
    assert (out["line"], out["problem"]) == (13, "inserted")


def test_a_well_chained_forgery_past_the_head_is_unsigned(home: Path) -> None:
    old = lines(home)
    rec = json.loads(old[-1])
    rec.update(alias="innocent", seq=13, prev=hashlib.sha256(old[-1]).hexdigest())
    put(home, [*old, (json.dumps(rec, separators=(",", ":")) + "\n").encode()])
    code, out, _ = verify(home)
    assert code == 0 and "1 later record not signed yet" in out["message"]
    code, out, _ = verify(home, "--strict")
    assert code == BROKEN
    assert (out["line"], out["problem"]) == (13, "unsigned")


def test_a_rewritten_chain_does_not_match_the_signed_head(home: Path) -> None:
    old = lines(home)
    new: list[bytes] = []
    for i, raw in enumerate(old):
        rec = json.loads(raw)
        if i == 2:
            rec["alias"] = "rewritten"
        if new:
            rec["prev"] = hashlib.sha256(new[-1]).hexdigest()
        new.append((json.dumps(rec, separators=(",", ":")) + "\n").encode())
    put(home, new)
    code, out, _ = verify(home)
    assert code == BROKEN
    assert (out["line"], out["problem"]) == (12, "edited")


def test_a_head_edited_or_signed_by_another_key_is_forged(home: Path) -> None:
    head_file = home / "audit.log.head"
    genuine = json.loads(head_file.read_text())
    head_file.write_text(json.dumps({**genuine, "count": 11}))
    code, out, _ = verify(home)
    assert code == BROKEN and out["problem"] == "forged" and out["line"] is None

    # An attacker's own key makes a consistent head: only the store's key tells it apart.
    from nacl.signing import SigningKey

    attacker = SigningKey.generate()
    ts = genuine["ts"]
    sig = attacker.sign(head_message(12, genuine["head"], ts)).signature
    head_file.write_text(
        json.dumps({**genuine, "key": bytes(attacker.verify_key).hex(), "sig": sig.hex()})
    )
    assert verify(home)[0] == 0
    code, out, _ = verify(home, "--check-key", password=True)
    assert code == BROKEN and out["problem"] == "forged"
    assert "not by the store's key" in out["message"]


def test_concurrent_writers_in_several_processes_leave_one_intact_chain(home: Path) -> None:
    script = (
        "import sys\n"
        "from vultrino import Vultrino\n"
        "with Vultrino.open(sys.argv[1], sys.argv[2]) as v:\n"
        "    for i in range(60):\n"
        "        try:\n"
        "            v.execute(f'{sys.argv[3]}-{i}', 'request', {'url': 'https://example.com/'})\n"
        "        except Exception:\n"
        "            pass\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(home), PASSWORD, f"p{n}"])
        for n in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    code, out, _ = verify(home, "--strict", "--check-key", password=True)
    assert code == 0, out
    assert out["records"] == 12 + 4 * 60 and out["signed_count"] == out["records"]
    aliases = [json.loads(raw)["alias"] for raw in lines(home)]
    assert sorted(a for a in aliases if a.startswith("p")) == sorted(
        f"p{n}-{i}" for n in range(4) for i in range(60)
    )


def test_a_log_from_before_the_chain_says_where_the_chain_starts(isolated_home: Path) -> None:
    home = isolated_home
    Vultrino.init(home, PASSWORD, kdf=KdfParams.minimal()).close()
    legacy = [
        json.dumps({"ts": "2026-01-01T00:00:00.000+00:00", "alias": f"old-{i}"}) + "\n"
        for i in range(3)
    ]
    (home / "audit.log").write_text("".join(legacy))
    _write_calls(home, 2)
    code, out, _ = verify(home)
    assert code == 0 and out["chain_start"] == 4 and out["records"] == 5
    assert "chain intact from line 4 (lines 1-3 predate the chain)" in out["message"]
    old = lines(home)
    put(home, [old[0], old[1], old[3], old[4]])  # the legacy line the chain starts from
    code, out, _ = verify(home)
    assert code == BROKEN and (out["line"], out["problem"]) == (3, "missing")
