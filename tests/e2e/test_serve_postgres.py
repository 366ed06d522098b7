"""Three `vultrino serve` replicas on one PostgreSQL store (docs/scaling.md): real server
processes, a real database (tests/pgcluster.py), httpx over loopback.

Each replica has a home of its own (plugins, config.toml, audit log, server.json), as on
separate hosts; the database is the only state they share.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.e2e.mcp_helpers import HANG_GUARD_S, McpHome, make_home
from tests.e2e.serve_helpers import Server, cli_json, make_key, serve

RATE = 6  # the [[policies]] budget the replicas share
NEW_SECRET = "sk-NEW-REPLICA-SECRET-5e1d"


def _config(url: str) -> str:
    return (
        f'[store]\nurl = "{url}"\n'
        '[[policies]]\nname = "echo-budget"\ncredential_pattern = "echo-*"\n'
        'default_action = "allow"\n'
        f"rules = [{{ condition = {{ rate_limit = {{ max = {RATE}, window_secs = 3600 }} }}, "
        'action = "allow" }]\n'
    )


def _homes(first_root: Path, url: str, tmp_path: Path, config: str) -> list[McpHome]:
    """Three homes whose config points at the database ``url``, the first home's store
    migrated in."""
    first = make_home(first_root)
    r = first.cli("store", "migrate", "--to", url)
    assert r.returncode == 0, r.stderr
    (first.root / "credentials.enc").unlink()  # from now on only the database holds it
    (first.root / "config.toml").write_text(config)
    homes = [first]
    for n in (2, 3):
        root = tmp_path / f"replica{n}"
        shutil.copytree(first.root / "plugins", root / "plugins")
        (root / "config.toml").write_text(config)
        homes.append(McpHome(root, first.password_file, first.secrets))
    return homes


@pytest.fixture
def replicas(isolated_home: Path, pg_url: str, tmp_path: Path) -> Iterator[list[McpHome]]:
    """Three homes whose config points at one database, the first home's store migrated in."""
    yield _homes(isolated_home, pg_url, tmp_path, _config(pg_url))


def _get(server: Server, key: str, path: str) -> httpx.Response:
    return httpx.get(
        f"{server.api}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=HANG_GUARD_S
    )


def _echo(server: Server, key: str, message: str) -> httpx.Response:
    return httpx.post(
        f"{server.api}/execute",
        headers={"Authorization": f"Bearer {key}"},
        json={"credential": "echo-one", "action": "echo", "params": {"message": message}},
        timeout=HANG_GUARD_S,
    )


def test_three_replicas_share_keys_credentials_and_one_rate_limit(
    replicas: list[McpHome], pg_cluster: object, pg_url: str
) -> None:
    key = make_key(replicas[0], "shared", "admin")  # made through replica 1's home only
    with ExitStack() as stack:
        servers = [stack.enter_context(serve(home)) for home in replicas]
        # the key, stored once in the database, opens every replica
        for s in servers:
            listed = _get(s, key, "/credentials")
            assert listed.status_code == 200, listed.text
        # a credential added on one home reaches the other replicas (bounded wait, 1 s)
        added = replicas[0].cli(
            "add", "--alias", "fresh", "--type", "api_key", "--field", f"key={NEW_SECRET}"
        )
        assert added.returncode == 0, added.stderr
        for s in servers[1:]:
            deadline = time.monotonic() + 1.0
            while True:
                aliases = [c["alias"] for c in _get(s, key, "/credentials").json()["credentials"]]
                if "fresh" in aliases or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert "fresh" in aliases
        # the policy's budget is one bucket in the database: all replicas together allow RATE
        codes = [_echo(s, key, f"m{i}").status_code for i in range(4) for s in servers]
        assert codes.count(200) == RATE, codes
        assert codes.count(429) == len(codes) - RATE, codes
    dump = pg_cluster.dump(pg_url)  # type: ignore[attr-defined]
    assert b"vultrino_records" in dump
    for secret in [*replicas[0].secrets, NEW_SECRET, key]:
        for form in (secret.encode(), secret.encode().hex().encode()):
            assert form not in dump, secret


def test_a_replica_whose_database_is_unreachable_does_not_start(replicas: list[McpHome]) -> None:
    home = replicas[1]
    (home.root / "config.toml").write_text('[store]\nurl = "postgresql://nobody@127.0.0.1:1/x"\n')
    r = home.cli("serve", "--bind", "127.0.0.1:0")
    assert r.returncode == 3, r.stderr
    assert "cannot reach the PostgreSQL store at postgresql://nobody@127.0.0.1:1/x" in r.stderr


def _waiting(home: McpHome, count: int) -> list[dict[str, object]]:
    """`vultrino approvals list --json` on ``home``'s replica, until ``count`` calls wait."""
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        rows: list[dict[str, object]] = cli_json(home, "approvals", "list")  # type: ignore[assignment]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_a_call_held_on_one_replica_is_decided_on_another(replicas: list[McpHome]) -> None:
    first = replicas[0]
    r = first.cli("role", "create", "gated", "-p", "execute", "-c", "echo-*", "--approve", "echo")
    assert r.returncode == 0, r.stderr
    gated = make_key(first, "gated-key", "gated")
    admin = make_key(first, "ops", "admin")
    results: dict[str, httpx.Response] = {}
    with ExitStack() as stack:
        a, b, _c = (stack.enter_context(serve(home)) for home in replicas)

        def call(name: str, message: str) -> threading.Thread:
            def run() -> None:
                results[name] = _echo(b, gated, message)

            t = threading.Thread(target=run)
            t.start()
            return t

        # held on replica B; every replica's inbox lists it, with what the inbox shows
        t = call("approved", "ship it")
        rows = _waiting(replicas[2], 1)
        assert [row["key"] for row in rows] == ["gated-key"], rows
        [item] = rows
        assert item["credential"] == "echo-one" and "ship it" in str(item["summary"])
        on_a = _get(a, admin, "/approvals").json()["approvals"]
        assert [row["id"] for row in on_a] == [item["id"]]
        # the caller's own key cannot approve it from any replica
        own = httpx.post(
            f"{a.api}/approvals/{item['id']}",
            headers={"Authorization": f"Bearer {gated}"},
            json={"decision": "approve"},
            timeout=HANG_GUARD_S,
        )
        assert own.status_code == 403
        # a person approves on replica A: the call on B runs
        r = first.cli("approvals", "approve", str(item["id"]))
        assert r.returncode == 0, r.stderr
        t.join(HANG_GUARD_S)
        assert results["approved"].status_code == 200, results["approved"].text
        assert results["approved"].json()["result"]["params"] == {"message": "ship it"}
        # a second decision, on replica C, is refused and says what stood
        again = replicas[2].cli("approvals", "deny", str(item["id"]))
        assert again.returncode == 11, again.stderr
        assert "already approved by server-token" in again.stderr
        assert _waiting(replicas[1], 0) == []

        # denied over REST on replica A: the call on B is refused
        t = call("denied", "not this")
        [held] = _waiting(replicas[1], 1)
        no = httpx.post(
            f"{a.api}/approvals/{held['id']}",
            headers={"Authorization": f"Bearer {admin}"},
            json={"decision": "deny"},
            timeout=HANG_GUARD_S,
        )
        assert no.status_code == 200 and no.json()["outcome"] == "declined", no.text
        t.join(HANG_GUARD_S)
        assert results["denied"].status_code == 403
        assert results["denied"].json()["code"] == "approval_denied"
    # each decision is audited once, in the audit table every replica shares
    records: list[dict[str, object]] = cli_json(replicas[2], "audit")  # type: ignore[assignment]
    assert not any((home.root / "audit.log").exists() for home in replicas[1:])
    granted = [rec for rec in records if rec.get("action") == "approval.granted"]
    declined = [rec for rec in records if rec.get("action") == "approval.declined"]
    assert [rec["subject"] for rec in granted] == [item["id"]]
    assert [rec["subject"] for rec in declined] == [held["id"]]
    assert declined[0]["decided_by"] == "key:ops"


def test_a_database_restart_under_load_loses_no_audit_record_of_a_success(
    isolated_home: Path, tmp_path: Path
) -> None:
    from tests.pgcluster import start_cluster

    cluster = start_cluster()  # a cluster of its own: this test stops it
    try:
        url = cluster.new_database()
        homes = _homes(isolated_home, url, tmp_path, f'[store]\nurl = "{url}"\n')
        key = make_key(homes[0], "load", "admin")
        ok: list[float] = []  # how long each success took
        failed: list[tuple[float, int, str]] = []  # each failure: took, status, message
        stop = threading.Event()
        with ExitStack() as stack:
            servers = [stack.enter_context(serve(home)) for home in homes]

            def load(server: Server) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    started = time.monotonic()
                    try:
                        r = _echo(server, key, f"m{n}")
                    except httpx.HTTPError as exc:
                        failed.append((time.monotonic() - started, 0, str(exc)))
                        continue
                    took = time.monotonic() - started
                    if r.status_code == 200:
                        ok.append(took)
                    else:
                        failed.append((took, r.status_code, r.json().get("error", "")))

            threads = [threading.Thread(target=load, args=(s,)) for s in servers]
            for t in threads:
                t.start()
            while len(ok) < 30:
                time.sleep(0.05)
            cluster.stop()  # immediate: the database dies under the load
            # until calls meet the outage (each fails within its deadline; how soon the first
            # does depends on the machine's load, so the wait is bounded, not fixed)
            outage = time.monotonic() + HANG_GUARD_S
            while not failed and time.monotonic() < outage:
                time.sleep(0.05)
            time.sleep(0.5)
            during = len(failed)
            cluster.restart_stopped()
            # every replica reconnects by itself: its calls succeed again
            deadline = time.monotonic() + HANG_GUARD_S
            for s in servers:
                while True:
                    started = time.monotonic()
                    r = _echo(s, key, "probe")
                    took = time.monotonic() - started
                    if r.status_code == 200:
                        ok.append(took)
                        break
                    failed.append((took, r.status_code, r.json().get("error", "")))
                    assert time.monotonic() < deadline, f"{s.url} did not reconnect"
                    time.sleep(0.1)
            mark = len(ok)
            while len(ok) < mark + 30:
                time.sleep(0.05)
            stop.set()
            for t in threads:
                t.join(HANG_GUARD_S)
        assert during > 0, "no call met the outage"
        # a call while the database is down fails with a clear error, never a hang
        for took, status, message in failed:
            assert status == 503, (status, message)
            assert "PostgreSQL store" in message, message
            assert took < HANG_GUARD_S, (took, message)
        recorded: list[dict[str, object]] = cli_json(  # type: ignore[assignment]
            homes[0], "audit", "--alias", "echo-one", "--outcome", "ok"
        )
        recorded = [r for r in recorded if r.get("key") == "key:load"]
        # every success the clients saw has its record; a record beyond them can only be a
        # call whose record committed as the database died, before the replica heard so
        lost_with_db = sum(1 for _, _, m in failed if "writing an audit record" in m)
        assert len(ok) <= len(recorded) <= len(ok) + lost_with_db
        verified = homes[1].cli("audit", "verify")
        assert verified.returncode == 0, verified.stderr
    finally:
        cluster.remove()


def test_the_web_admin_password_set_on_one_replica_signs_in_on_another(
    replicas: list[McpHome],
) -> None:
    """The admin password is a sealed row of the shared store: set through replica A's home,
    a person signs in to the web UI of replica B (its session then lives in B's memory)."""
    from tests.e2e.test_webui import login

    admin = "web admin password, shared by every replica"
    r = replicas[0].cli("admin", "set-password", "--stdin", input=f"{admin}\n")
    assert r.returncode == 0, r.stderr
    with serve(replicas[1]) as b:
        with httpx.Client(base_url=b.url, timeout=HANG_GUARD_S, follow_redirects=False) as c:
            assert login(c, "not the password").status_code == 401
        with httpx.Client(base_url=b.url, timeout=HANG_GUARD_S, follow_redirects=False) as c:
            signed_in = login(c, admin)
            assert signed_in.status_code == 303, signed_in.text
            assert c.get("/").status_code == 200
