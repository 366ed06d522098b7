"""The PostgreSQL store against a real PostgreSQL (tests/pgcluster.py): several processes on
one database, shared rate limits, nothing readable in a dump, faults named clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vultrino.errors import StoreCorruptError, StoreUnavailableError, WrongPasswordError
from vultrino.store import Credential, KdfParams, create_store, open_store

PASSWORD = "pg-store-password-Zq81"
SECRET = "sk-live-PG-SECRET-VALUE-7f3a9c"
AGENT_TOKEN_HASH = "agent-hash-PG-SECRET-2b7d"
MIN = KdfParams.minimal()
ROOT = Path(__file__).resolve().parents[2]


def _cred(alias: str, secret: str = SECRET) -> Credential:
    return Credential(alias, "api_key", {"key": secret, "header": "X-Key"}, secret_fields=["key"])


def _python(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_write_in_one_process_reaches_another_within_a_second(pg_url: str) -> None:
    with create_store(pg_url, PASSWORD, MIN) as store:
        store.add(_cred("first"))
        watcher = _python(
            """
            import sys, time
            from vultrino.store import open_store
            s = open_store(sys.argv[1] if len(sys.argv) > 1 else __import__("os").environ["URL"],
                           __import__("os").environ["PW"])
            seen = s.revision
            print("ready", flush=True)
            end = time.monotonic() + 10
            while time.monotonic() < end:
                if s.revision != seen and "second" in [c.alias for c in s.credentials()]:
                    print("saw", flush=True)
                    break
                time.sleep(0.005)
            """,
            {"URL": pg_url, "PW": PASSWORD},
        )
        assert watcher.stdout is not None
        assert watcher.stdout.readline().strip() == "ready"
        store.add(_cred("second"))
        # bounded wait, not a timing assert: the watcher polls for 10 s at most
        out, errout = watcher.communicate(timeout=30)
        assert out.strip() == "saw", errout


def test_concurrent_writers_on_two_handles_lose_no_update(pg_url: str) -> None:
    with create_store(pg_url, PASSWORD, MIN) as a, open_store(pg_url, PASSWORD) as b:

        def add(store: object, prefix: str) -> None:
            for i in range(15):
                store.add(_cred(f"{prefix}-{i}"))  # type: ignore[attr-defined]

        threads = [threading.Thread(target=add, args=(s, p)) for s, p in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with open_store(pg_url, PASSWORD) as fresh:
        aliases = {c.alias for c in fresh.credentials()}
    assert aliases == {f"{p}-{i}" for p in "ab" for i in range(15)}


def test_the_rate_limit_is_shared_by_processes(pg_url: str) -> None:
    create_store(pg_url, PASSWORD, MIN).close()
    script = """
        import os
        from vultrino.store import open_store
        s = open_store(os.environ["URL"], os.environ["PW"])
        print(sum(s.take_token("agent:bot", 10, 3600.0) == 0.0 for _ in range(20)))
    """
    procs = [_python(script, {"URL": pg_url, "PW": PASSWORD}) for _ in range(3)]
    allowed = []
    for p in procs:
        out, errout = p.communicate(timeout=60)
        assert p.returncode == 0, errout
        allowed.append(int(out))
    assert sum(allowed) == 10  # three processes together allow exactly the limit
    with open_store(pg_url, PASSWORD) as store:
        wait = store.take_token("agent:bot", 10, 3600.0)
    assert 0 < wait <= 360.0  # one token back takes a tenth of the period


def test_a_dump_of_the_database_holds_no_secret(pg_url: str, pg_cluster: object) -> None:
    with create_store(pg_url, PASSWORD, MIN) as store:
        store.add(_cred("github-prod"))
        store.put_agent({"name": "deploy-bot", "token_hash": AGENT_TOKEN_HASH})
        store.put_key({"id": "key-one", "hash": AGENT_TOKEN_HASH + "-key"})
        store.sign_audit_head(b"head")
    dump = pg_cluster.dump(pg_url)  # type: ignore[attr-defined]
    assert b"vultrino_records" in dump  # it is the store's dump
    for needle in (SECRET, AGENT_TOKEN_HASH, PASSWORD, "github-prod", "deploy-bot", "key-one"):
        for form in (needle.encode(), needle.encode().hex().encode(), needle.encode("utf-16-le")):
            assert form not in dump, needle


def test_a_modified_row_is_refused_and_a_wrong_password_too(pg_url: str) -> None:
    import psycopg

    with create_store(pg_url, PASSWORD, MIN) as store:
        store.add(_cred("one"))
        store.add(_cred("two"))
    with pytest.raises(WrongPasswordError):
        open_store(pg_url, "not the password")
    with psycopg.connect(pg_url, autocommit=True) as conn:  # swap the two rows' ciphertexts
        rows = conn.execute("SELECT id, sealed FROM vultrino_records").fetchall()
        conn.execute(
            "UPDATE vultrino_records SET sealed = %s WHERE id = %s", (rows[1][1], rows[0][0])
        )
    with pytest.raises(StoreCorruptError, match="rows were changed"):
        open_store(pg_url, PASSWORD)


def test_an_unreachable_database_is_a_clear_error(pg_cluster: object) -> None:
    url = pg_cluster.url("postgres").replace(  # type: ignore[attr-defined]
        f":{pg_cluster.port}/",
        ":1/",  # type: ignore[attr-defined]
    )
    with pytest.raises(StoreUnavailableError, match="cannot reach the PostgreSQL store") as info:
        open_store(url, PASSWORD)
    assert "VULTRINO_STORE_URL" in str(info.value)


def test_migrate_to_postgres_and_back_through_the_cli(
    pg_url: str, isolated_home: Path, tmp_path: Path
) -> None:
    env = {"VULTRINO_HOME": str(isolated_home), "VULTRINO_PASSWORD": PASSWORD}

    def cli(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vultrino", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )

    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 8\n")
    created = cli("init")
    assert created.returncode == 0 and f"created {isolated_home}" in created.stderr
    added = cli(
        "add",
        "--alias",
        "gh",
        "--type",
        "api_key",
        "--field",
        f"key={SECRET}",
        "--field",
        "header=X",
    )
    assert added.returncode == 0, added.stderr
    admin = "the web admin password, migrated"
    set_admin = subprocess.run(
        [sys.executable, "-m", "vultrino", "admin", "set-password", "--stdin"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        input=f"{admin}\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert set_admin.returncode == 0, set_admin.stderr
    info = cli("store", "info", "--json")
    assert json.loads(info.stdout)["backend"] == "file"

    moved = cli("store", "migrate", "--to", pg_url)
    assert moved.returncode == 0, moved.stderr
    assert "checked each one" in moved.stderr and SECRET not in moved.stdout + moved.stderr
    pg_env = {"VULTRINO_STORE_URL": pg_url}
    info = cli("store", "info", "--json", extra=pg_env)
    assert info.returncode == 0, info.stderr
    shown = json.loads(info.stdout)
    assert shown["backend"] == "postgresql" and shown["credentials"] == 1
    assert shown["shared_rate_limits"] is True
    again = cli("store", "migrate", "--to", pg_url)  # the database is not empty now
    assert again.returncode == 3 and "already holds a Vultrino store" in again.stderr

    back = tmp_path / "back" / "credentials.enc"
    returned = cli("store", "migrate", "--to", str(back), extra=pg_env)
    assert returned.returncode == 0, returned.stderr
    with open_store(back, PASSWORD) as copy:
        assert [(c.alias, c.fields["key"]) for c in copy.credentials()] == [("gh", SECRET)]
        assert copy.check_admin_password(admin)  # there and back: the admin password too
    with open_store(pg_url, PASSWORD) as shared:
        assert shared.check_admin_password(admin)

    unlocked = cli("unlock", extra=pg_env)
    assert unlocked.returncode == 3 and "VULTRINO_PASSWORD_FILE" in unlocked.stderr

    down = cli("store", "info", extra={"VULTRINO_STORE_URL": "postgresql://nobody@127.0.0.1:1/x"})
    assert down.returncode == 3
    assert "cannot reach the PostgreSQL store at postgresql://nobody@127.0.0.1:1/x" in down.stderr
    bad = cli("store", "info", extra={"VULTRINO_STORE_URL": "mysql://db/x"})
    assert bad.returncode == 2 and "VULTRINO_STORE_URL" in bad.stderr


def test_a_lost_database_fails_calls_at_once_and_the_store_reconnects() -> None:
    from tests.pgcluster import start_cluster

    cluster = start_cluster()  # a cluster of its own: this test stops it
    try:
        url = cluster.new_database()
        with create_store(url, PASSWORD, MIN) as store:
            store.add(_cred("before"))
            cluster.stop()
            with pytest.raises(StoreUnavailableError, match="PostgreSQL store") as info:
                store.add(_cred("during"))
            assert PASSWORD not in str(info.value)
            with pytest.raises(StoreUnavailableError):
                store.take_token("agent:bot", 5, 60.0)
            cluster.restart_stopped()
            store.add(_cred("after"))  # the first call after the outage goes through
            assert [c.alias for c in store.credentials()] == ["after", "before"]
            assert store.take_token("agent:bot", 5, 60.0) == 0.0
        with open_store(url, PASSWORD) as again:
            assert [c.alias for c in again.credentials()] == ["after", "before"]
    finally:
        cluster.remove()


def test_init_with_a_store_url_creates_the_store_in_the_database(
    pg_url: str, isolated_home: Path
) -> None:
    (isolated_home / "config.toml").write_text(
        f'store = "{pg_url}"\n'  # the top-level shorthand
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VULTRINO_HOME": str(isolated_home),
        "VULTRINO_PASSWORD": PASSWORD,
    }
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", "init"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "created postgresql://vultrino_test@127.0.0.1:" in r.stderr
    assert not (isolated_home / "credentials.enc").exists()
    with open_store(pg_url, PASSWORD) as store:
        assert store.credentials() == []
    again = subprocess.run(
        [sys.executable, "-m", "vultrino", "init"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 3 and "already holds a Vultrino store" in again.stderr


def test_kill_9_of_a_writer_mid_write_loses_nothing_committed(pg_url: str) -> None:
    create_store(pg_url, PASSWORD, MIN).close()
    writer = _python(
        """
        import os
        from vultrino.store import Credential, open_store
        s = open_store(os.environ["URL"], os.environ["PW"])
        for i in range(100000):
            s.add(Credential(f"c{i}", "api_key", {"key": f"secret-{i}", "header": "X"}))
            print(i, flush=True)
        """,
        {"URL": pg_url, "PW": PASSWORD},
    )
    assert writer.stdout is not None
    for _ in range(40):  # some writes committed (each printed after its commit)
        last = int(writer.stdout.readline())
    writer.kill()  # SIGKILL, in the middle of some later write
    writer.communicate(timeout=30)  # reaps it and closes its pipes
    with open_store(pg_url, PASSWORD) as store:  # opens: nothing half-written
        aliases = {c.alias for c in store.credentials()}
        assert {f"c{i}" for i in range(last + 1)} <= aliases  # nothing committed is lost
        n = len(aliases)
        assert aliases == {f"c{i}" for i in range(n)}  # and no gap, no stray record
        store.add(_cred("after-the-kill"))  # the store takes writes again


def test_the_web_admin_password_is_sealed_in_a_row_every_process_sees(
    pg_url: str, pg_cluster: object
) -> None:
    """The web UI's admin password (its Argon2id hash) is one more sealed row: set on one
    handle, checked on another, never in a dump in any form, and removable."""
    admin = "a long admin password, replicas"
    with create_store(pg_url, PASSWORD, MIN) as store, open_store(pg_url, PASSWORD) as other:
        assert not other.has_admin_password()
        store.set_admin_password(admin)
        assert store.check_admin_password(admin)
        assert other.has_admin_password()  # the revision moved: the other handle re-reads
        assert other.check_admin_password(admin)
        assert not other.check_admin_password("not it")
        store.add(_cred("kept"))  # a later write keeps the admin row
    with open_store(pg_url, PASSWORD) as again:
        assert again.check_admin_password(admin)
        dump = pg_cluster.dump(pg_url)  # type: ignore[attr-defined]
        assert b"argon2" not in dump.lower()  # not even its hash is in the clear
        for form in (admin.encode(), admin.encode().hex().encode(), admin.encode("utf-16-le")):
            assert form not in dump
        again.set_admin_password(None)
        assert not again.has_admin_password()
    with open_store(pg_url, PASSWORD) as last:
        assert not last.has_admin_password()


def _tamper(pg_url: str, *statements: tuple[str, tuple[object, ...]]) -> None:
    """What a database writer without the password can do: change rows, then bump the revision
    and NOTIFY as a replica's write would, so every open store reloads."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction():
        for sql, params in statements:
            conn.execute(sql, params)  # type: ignore[arg-type]
        rev = conn.execute(
            "UPDATE vultrino_store SET revision = revision + 1 RETURNING revision"
        ).fetchone()
        assert rev is not None
        conn.execute("SELECT pg_notify('vultrino_store', %s)", (str(rev[0]),))


TAMPERED = "rows were changed, deleted, added or put back"


def test_a_row_put_back_or_deleted_by_a_database_writer_is_refused(
    pg_url: str, isolated_home: Path
) -> None:
    """Each row is sealed on its own, so without a check over the set of rows a writer without
    the password could put back a row removed earlier (a revoked API key, a removed
    credential, a role before it was narrowed) or delete one, and every replica took it."""
    import psycopg

    def rows() -> list[tuple[bytes, bytes, int]]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            return [tuple(r) for r in conn.execute("SELECT * FROM vultrino_records").fetchall()]

    put_back = (
        "INSERT INTO vultrino_records (id, sealed, revision) VALUES (%s, %s, %s) "
        "ON CONFLICT (id) DO NOTHING"
    )
    with create_store(pg_url, PASSWORD, MIN) as store:
        store.add(_cred("kept"))
        store.add(_cred("removed-later"))
        store.put_key({"id": "k1", "name": "ci", "role": "reader", "hash": "h1"})
    before = rows()
    with open_store(pg_url, PASSWORD) as replica:
        with open_store(pg_url, PASSWORD) as admin:
            admin.remove("removed-later")
            admin.remove_key("k1")
        assert [c.alias for c in replica.credentials()] == ["kept"]
        assert replica.key_records() == []
        after = rows()
        # the writer puts the removed credential's and the revoked key's rows back
        _tamper(pg_url, *((put_back, row) for row in before))
        with pytest.raises(StoreCorruptError, match=TAMPERED):
            deadline = time.monotonic() + 5  # a running replica reloads on the NOTIFY: refused
            while time.monotonic() < deadline:
                assert [c.alias for c in replica.credentials()] == ["kept"]
                time.sleep(0.01)
    with pytest.raises(StoreCorruptError, match=TAMPERED):
        open_store(pg_url, PASSWORD)  # and so does one that starts
    # the genuine rows again: the store opens
    _tamper(pg_url, ("DELETE FROM vultrino_records", ()), *((put_back, row) for row in after))
    with open_store(pg_url, PASSWORD) as store:
        assert [c.alias for c in store.credentials()] == ["kept"]
    # a row deleted (a credential silently gone) is refused the same way
    _tamper(pg_url, ("DELETE FROM vultrino_records", ()))
    with pytest.raises(StoreCorruptError, match=TAMPERED):
        open_store(pg_url, PASSWORD)
    listed = subprocess.run(  # the real CLI says so, with the store's exit code
        [sys.executable, "-m", "vultrino", "list"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "VULTRINO_HOME": str(isolated_home),
             "VULTRINO_STORE_URL": pg_url, "VULTRINO_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert listed.returncode == 3, listed.stderr
    assert TAMPERED in listed.stderr


def test_a_database_that_stops_answering_fails_calls_instead_of_hanging_them() -> None:
    """A database that keeps its connections open but answers nothing (a hung server, a
    network that drops packets: here every PostgreSQL process is SIGSTOPped) held a call's
    rate-limit token, its audit record and a held call's approval poll for ever: psycopg
    waits on the socket with no bound. Each now fails with StoreUnavailableError."""
    from tests.pgcluster import start_cluster
    from vultrino.store.pg_approvals import ApprovalTable
    from vultrino.store.pg_audit import AuditTable

    cluster = start_cluster()  # a cluster of its own: this test freezes it
    try:
        url = cluster.new_database()
        with create_store(url, PASSWORD, MIN) as store:
            audit = AuditTable(url)
            approvals = ApprovalTable(url)
            store.take_token("agent:bot", 5, 60.0)  # every pool holds a connection now
            audit.append(action="warm")
            approvals.hold("a1", {"plugin": "p", "action": "x", "summary": "s"}, 60.0)
            cluster.freeze()
            try:
                outcomes: dict[str, BaseException | None] = {}

                def attempt(name: str, fn: Callable[[], object]) -> None:
                    try:
                        fn()
                        outcomes[name] = None
                    except BaseException as exc:  # what the call saw
                        outcomes[name] = exc

                calls: dict[str, Callable[[], object]] = {
                    "token": lambda: store.take_token("agent:bot", 5, 60.0),
                    "audit": lambda: audit.append(action="frozen"),
                    "approval": lambda: approvals.decision("a1"),
                }
                threads = [
                    threading.Thread(target=attempt, args=(n, f), daemon=True)
                    for n, f in calls.items()
                ]
                for t in threads:
                    t.start()
                end = time.monotonic() + 60  # far above the statement wait: no speed check
                for t in threads:
                    t.join(max(end - time.monotonic(), 0))
                assert set(outcomes) == set(calls), f"still waiting: {set(calls) - set(outcomes)}"
                for name, exc in outcomes.items():
                    assert isinstance(exc, StoreUnavailableError), (name, exc)
                    assert "did not answer in 5 s while" in str(exc), (name, exc)
                    assert PASSWORD not in str(exc)
            finally:
                cluster.thaw()
            # the database answers again: the same objects work without a restart
            assert store.take_token("agent:bot", 5, 60.0) == 0.0
            audit.append(action="after")
            assert approvals.decision("a1") is None
            audit.close()
            approvals.close()
    finally:
        cluster.remove()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://vultrino:DB-PASSWORD-x91@[::1/vultrino",  # an unclosed IPv6 bracket
        "postgresql://vultrino:DB-PASSWORD-x91@db.invalid:5432/vultrino?sslmode=required",
        "postgresql://vultrino:DB-PASSWORD-x91@db.invalid:5432/vultrino?bogus=1",
        "postgresql://vultrino:DB-PASSWORD-x91@db.invalid:54x/vultrino",
    ],
)
def test_a_malformed_store_url_never_prints_its_password(url: str, isolated_home: Path) -> None:
    """libpq's parse errors quote the URL they could not parse, password and all: a typo in
    VULTRINO_STORE_URL printed the database password to the terminal and the service log."""
    listed = subprocess.run(
        [sys.executable, "-m", "vultrino", "list"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "VULTRINO_HOME": str(isolated_home),
             "VULTRINO_STORE_URL": url, "VULTRINO_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert listed.returncode == 3, listed.stderr
    assert "DB-PASSWORD-x91" not in listed.stdout + listed.stderr
    assert "VULTRINO_STORE_URL" in listed.stderr  # it says what to check


def test_a_rate_bucket_does_not_name_its_agent_to_a_database_reader(
    pg_url: str, pg_cluster: object
) -> None:
    """Record ids are keyed so that names stay sealed, but the rate buckets were found by an
    unkeyed BLAKE2b of their name: whoever read the database (or a dump) could confirm a
    guessed agent name or credential alias by hashing it."""
    import hashlib

    from tests.pgcluster import Cluster

    assert isinstance(pg_cluster, Cluster)
    name = "agent:payroll-bot-Kq3"
    with create_store(pg_url, PASSWORD, MIN) as store:
        assert store.take_token(name, 5, 60.0) == 0.0
        with open_store(pg_url, PASSWORD) as other:  # another replica shares the bucket
            for _ in range(4):
                assert other.take_token(name, 5, 60.0) == 0.0
            assert other.take_token(name, 5, 60.0) > 0
    dump = pg_cluster.dump(pg_url)
    guessed = hashlib.blake2b(name.encode(), digest_size=20, person=b"vultrino-rate").digest()
    assert guessed.hex().encode() not in dump.lower()
    assert b"payroll-bot" not in dump
    with open_store(pg_url, PASSWORD) as store:  # still the same bucket after a reopen
        assert store.take_token(name, 5, 60.0) > 0
        store.rekey("a new password for the store", MIN)  # a new key: the buckets start full
        assert store.take_token(name, 5, 60.0) == 0.0


def test_a_bogus_notify_does_not_make_every_read_ask_the_database() -> None:
    """Any role that may connect can NOTIFY vultrino_store (NOTIFY needs no right on a
    table). A payload far above the store's revision made every later read of every
    replica a round trip to the database, until it restarted; now a read that finds the
    revision unchanged lets reads answer from the cache again."""
    import psycopg

    from tests.pgcluster import start_cluster

    cluster = start_cluster()  # a cluster of its own: this test freezes it
    try:
        url = cluster.new_database()
        with create_store(url, PASSWORD, MIN) as store:
            store.add(_cred("one"))
            deadline = time.monotonic() + 10
            while not store._listening and time.monotonic() < deadline:
                time.sleep(0.01)  # the listener is LISTENing
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("NOTIFY vultrino_store, '9000000000000000000'")
            while store._notified < 9 * 10**18 and time.monotonic() < deadline:
                time.sleep(0.01)  # and has heard it
            assert store._notified == 9 * 10**18
            assert [c.alias for c in store.credentials()] == ["one"]  # asks the database once
            cluster.freeze()  # from here on a read that asks the database fails
            try:
                assert [c.alias for c in store.credentials()] == ["one"]  # from the cache
            finally:
                cluster.thaw()
            store.add(_cred("two"))  # a real change still reaches the store
            assert [c.alias for c in store.credentials()] == ["one", "two"]
    finally:
        cluster.remove()


def test_a_write_waiting_on_a_lock_a_stuck_replica_holds_fails_instead_of_hanging(
    pg_url: str,
) -> None:
    """A replica that stopped (frozen, cut off) in the middle of a transaction holding the
    store's header row (a plugin being shared locks it) held every other replica's write
    (the web UI's, a key's creation) for as long as the database kept that transaction."""
    import psycopg

    with create_store(pg_url, PASSWORD, MIN) as store:
        store.add(_cred("before"))
        stuck = psycopg.connect(pg_url)  # the stuck replica's open transaction
        try:
            stuck.execute("SELECT 1 FROM vultrino_store WHERE id = 1 FOR UPDATE")
            with pytest.raises(StoreUnavailableError, match="did not answer in 30 s while"):
                store.add(_cred("during"))
        finally:
            stuck.close()  # its transaction ends (rolled back)
        store.add(_cred("after"))  # the next write goes through
        assert [c.alias for c in store.credentials()] == ["after", "before"]
