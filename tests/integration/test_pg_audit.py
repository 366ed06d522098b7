"""The audit log in PostgreSQL (vultrino/store/pg_audit.py) against a real database: one
chain across writers, the `audit` filters, follow across writers, append-only, and the
facade and CLI reading it."""

from __future__ import annotations

import hashlib
import json
import os
import select
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from vultrino import audit
from vultrino.store import audit_table
from vultrino.store.pg_audit import AuditTable

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pg-audit-password-4k2"


def _check(_key: bytes, _msg: bytes, _sig: bytes) -> bool:
    return False  # the table has no signed head: nothing is ever checked with this


def test_writers_on_two_handles_extend_one_chain_in_commit_order(pg_url: str) -> None:
    a, b = AuditTable(pg_url), AuditTable(pg_url)
    try:

        def write(table: AuditTable, who: str) -> None:
            for i in range(40):
                table.write(
                    {"alias": f"c{i % 3}", "plugin": "p", "action": "x", "agent": who,
                     "outcome": "ok" if i % 4 else "denied", "duration_ms": 0.5,
                     "source": "api"}
                )  # fmt: skip

        threads = [threading.Thread(target=write, args=(t, w)) for t, w in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        b.write({"alias": None, "plugin": None, "action": "store.rekey", "agent": None,
                 "outcome": "ok", "duration_ms": 0.0, "source": "admin"})  # fmt: skip
        records, last = a.query_from(audit.Filter())
        assert last == 81
        assert [r["seq"] for r in records] == list(range(1, 82))
        # the same chain a file log would hold: every line names the hash of the one before
        verdict = audit.verify_data(a.lines(), None, "the audit table", _check)
        assert verdict.ok and verdict.records == 81 and verdict.chain_start == 1, verdict
        # the filters, as `vultrino audit` gives them
        assert len(a.query_from(audit.Filter(agent="a"))[0]) == 40
        assert [r["action"] for r in a.query_from(audit.Filter(agent="-"))[0]] == ["store.rekey"]
        assert len(a.query_from(audit.Filter(alias="c0"))[0]) == 28
        assert len(a.query_from(audit.Filter(outcome="denied"))[0]) == 20
        future = datetime.now(timezone.utc) + timedelta(hours=1)
        assert a.query_from(audit.Filter(since=future))[0] == []
        assert len(a.query_from(audit.Filter(since="1h"))[0]) == 81
        newest, _ = a.query_from(audit.Filter(agent="b"), limit=2)
        assert [r["seq"] for r in newest] == sorted(r["seq"] for r in newest)
        page, more = a.tail(audit.Filter(), 10, skip=75)
        assert [r["seq"] for r in page] == [6, 5, 4, 3, 2, 1] and more is False
        page, more = a.tail(audit.Filter(), 5)
        assert [r["seq"] for r in page] == [81, 80, 79, 78, 77] and more is True
        # follow: a record written by the other writer arrives
        stream = a.follow(audit.Filter(alias="late"), last, interval=0.02)
        b.write({"alias": "late", "plugin": "p", "action": "x", "agent": None,
                 "outcome": "ok", "duration_ms": 1.0, "source": "cli"})  # fmt: skip
        got = next(stream)
        assert got["alias"] == "late" and got["seq"] == 82
    finally:
        a.close()
        b.close()


def test_the_table_refuses_updates_deletes_and_truncation(pg_url: str) -> None:
    table = AuditTable(pg_url)
    try:
        table.append(alias="x", plugin="p", action="a", agent=None, outcome="ok",
                     duration_ms=0.1, source="cli")  # fmt: skip
    finally:
        table.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for sql in (
            "UPDATE vultrino_audit SET line = '{}'",
            "DELETE FROM vultrino_audit",
            "TRUNCATE vultrino_audit",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql)
        [(count,)] = conn.execute("SELECT count(*) FROM vultrino_audit").fetchall()
    assert count == 1


def test_a_postgres_home_audits_into_the_table_and_the_cli_reads_it(
    pg_url: str, isolated_home: Path
) -> None:
    (isolated_home / "config.toml").write_text(
        f'[store]\nurl = "{pg_url}"\nkdf_opslimit = 1\nkdf_memlimit_mb = 8\n'
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VULTRINO_HOME": str(isolated_home),
        "VULTRINO_PASSWORD": PASSWORD,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vultrino", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    assert cli("init").returncode == 0
    added = cli("add", "--alias", "gh", "--type", "api_key", "--field", "key=sk-AUDIT-SECRET-91")
    assert added.returncode == 0, added.stderr
    removed = cli("remove", "gh", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert not (isolated_home / "audit.log").exists()  # nothing went to the file
    shown = cli("audit", "--json", "--alias", "gh")
    assert shown.returncode == 0, shown.stderr
    actions = [r["action"] for r in json.loads(shown.stdout)]
    assert actions == ["credential.add", "credential.remove"]
    table = cli("audit")
    assert "credential.remove" in table.stdout
    verified = cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    strict = cli("audit", "verify", "--strict")
    assert strict.returncode == 2 and "no signed head" in strict.stderr
    # --follow prints what another process writes next (here another home's CLI: a replica)
    no_password = {k: v for k, v in env.items() if k != "VULTRINO_PASSWORD"}
    follow = subprocess.Popen(
        [sys.executable, "-m", "vultrino", "audit", "--follow", "--json", "--alias", "later"],
        cwd=ROOT, env=no_password, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        other = isolated_home.parent / "other-replica"
        other.mkdir()
        (other / "config.toml").write_text((isolated_home / "config.toml").read_text())
        later = subprocess.run(
            [sys.executable, "-m", "vultrino", "add", "--alias", "later", "--type", "api_key",
             "--field", "key=sk-LATER-SECRET-3"],
            cwd=ROOT, env={**env, "VULTRINO_HOME": str(other)}, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert later.returncode == 0, later.stderr
        assert follow.stdout is not None
        ready, _, _ = select.select([follow.stdout], [], [], 60)
        assert ready, "audit --follow printed nothing"
        seen = json.loads(follow.stdout.readline())
        assert seen["alias"] == "later" and seen["action"] == "credential.add"
    finally:
        follow.kill()
        follow.wait(10)
        if follow.stdout is not None:
            follow.stdout.close()
    reader = audit_table(pg_url)  # what the CLI opens: reads need no store password
    try:
        assert [r["action"] for r in reader.query_from(audit.Filter(alias="gh"))[0]] == actions
    finally:
        reader.close()


def test_nothing_secret_reaches_the_table(pg_url: str, pg_cluster: object) -> None:
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    home = Path(os.environ["VULTRINO_HOME"])
    (home / "config.toml").write_text(f'[store]\nurl = "{pg_url}"\n')
    Vultrino.init(home, PASSWORD, kdf=KdfParams.minimal()).close()
    with Vultrino.open(home, PASSWORD) as v:
        v.add_credential("gh", "api_key", {"key": "sk-TABLE-SECRET-55"})
        assert [r["action"] for r in v.audit(alias="gh")] == ["credential.add"]
        page, more = v.audit_page(limit=1)
        assert page[0]["action"] == "credential.add" and more is (len(v.audit()) > 1)
    dump = pg_cluster.dump(pg_url)  # type: ignore[attr-defined]
    assert b"vultrino_audit" in dump and b"credential.add" in dump
    assert b"sk-TABLE-SECRET-55" not in dump


def _attack_home(pg_url: str, home: Path) -> Any:
    """A PostgreSQL home with three signed rows, and its CLI (password in the environment
    only when ``unlocked``)."""
    (home / "config.toml").write_text(
        f'[store]\nurl = "{pg_url}"\nkdf_opslimit = 1\nkdf_memlimit_mb = 8\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VULTRINO_HOME": str(home)}
    env.pop("VULTRINO_PASSWORD", None)

    def cli(*args: str, unlocked: bool = False) -> subprocess.CompletedProcess[str]:
        extra = {"VULTRINO_PASSWORD": PASSWORD} if unlocked else {}
        return subprocess.run(
            [sys.executable, "-m", "vultrino", *args],
            cwd=ROOT, env={**env, **extra}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    assert cli("init", unlocked=True).returncode == 0
    for alias in ("a", "b", "c"):
        done = cli("add", "--alias", alias, "--type", "api_key", "--field", "key=k", unlocked=True)
        assert done.returncode == 0, done.stderr
    return cli


def _rows(conn: psycopg.Connection[Any]) -> list[tuple[int, str]]:
    return conn.execute("SELECT seq, line FROM vultrino_audit ORDER BY seq").fetchall()


def _relinked(lines: list[str]) -> list[str]:
    """``lines`` renumbered and re-chained, as a writer who dropped the triggers would."""
    out, prev = [], "0" * 64
    for seq, line in enumerate(lines, 1):
        rec = json.loads(line)
        rec["seq"], rec["prev"] = seq, prev
        text = json.dumps(rec, separators=(",", ":"))
        out.append(text)
        prev = hashlib.sha256(text.encode() + b"\n").hexdigest()
    return out


def _rewrite(conn: psycopg.Connection[Any], lines: list[str], sigs: list[Any]) -> None:
    """Replace the table's rows (triggers dropped, as the table's owner could)."""
    conn.execute("ALTER TABLE vultrino_audit DISABLE TRIGGER USER")
    conn.execute("DELETE FROM vultrino_audit")
    for seq, (line, (sig, key)) in enumerate(zip(lines, sigs, strict=True), 1):
        conn.execute(
            "INSERT INTO vultrino_audit (seq, at, line, sig, key) VALUES (%s, now(), %s, %s, %s)",
            (seq, line, sig, key),
        )
    conn.execute("ALTER TABLE vultrino_audit ENABLE TRIGGER USER")


@pytest.mark.parametrize("attack", ["append", "edit", "delete", "rekey"])
def test_audit_verify_catches_rows_a_database_writer_forged(
    pg_url: str, isolated_home: Path, attack: str
) -> None:
    cli = _attack_home(pg_url, isolated_home)
    verified = cli("audit", "verify")  # no password needed
    assert verified.returncode == 0, verified.stderr
    assert "signed by key" in verified.stdout
    assert cli("audit", "verify", "--check-key", unlocked=True).returncode == 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = _rows(conn)
        assert len(rows) == 3
        sigs = conn.execute("SELECT sig, key FROM vultrino_audit ORDER BY seq").fetchall()
        lines = [line for _, line in rows]
        bad = 0
        if attack == "append":  # INSERT right only: a chained, unsigned approval
            rec = {"ts": "2026-01-01T00:00:00.000+00:00", "action": "approval.granted",
                   "agent": "mallory", "outcome": "ok", "seq": 4,
                   "prev": hashlib.sha256(lines[-1].encode() + b"\n").hexdigest()}  # fmt: skip
            line = json.dumps(rec, separators=(",", ":"))
            conn.execute(
                "INSERT INTO vultrino_audit (seq, at, line) VALUES (4, now(), %s)", (line,)
            )
            bad = 4
        elif attack == "edit":  # row 2 changed, every later hash link re-made
            rec = json.loads(lines[1])
            rec["alias"] = "other"
            lines[1] = json.dumps(rec, separators=(",", ":"))
            _rewrite(conn, _relinked(lines), sigs)
            bad = 2
        elif attack == "delete":  # row 2 dropped, row 3 renumbered and re-linked
            _rewrite(conn, _relinked([lines[0], lines[2]]), [sigs[0], sigs[2]])
            bad = 2
        else:  # every row re-signed with a key of the attacker's own
            import nacl.signing

            from vultrino.audit import row_message

            mine = nacl.signing.SigningKey.generate()
            forged = [
                (mine.sign(row_message(line)).signature, bytes(mine.verify_key)) for line in lines
            ]
            _rewrite(conn, lines, forged)
            bad = 1
    if attack == "rekey":  # consistent on its own: only the store's sealed key tells
        assert cli("audit", "verify").returncode == 0
        checked = cli("audit", "verify", "--check-key", "--json", unlocked=True)
    else:
        checked = cli("audit", "verify", "--json")
    assert checked.returncode == 10, (checked.stdout, checked.stderr)
    verdict = json.loads(checked.stdout)
    assert verdict["ok"] is False and verdict["line"] == bad, verdict
