"""Three `vultrino serve` replicas on one PostgreSQL store (docs/scaling.md): real server
processes, a real database (tests/pgcluster.py), httpx over loopback.

Each replica has a home of its own (plugins, config.toml, audit log, server.json), as on
separate hosts; the database is the only state they share.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.e2e.mcp_helpers import HANG_GUARD_S, McpHome, make_home
from tests.e2e.serve_helpers import Server, make_key, serve

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


@pytest.fixture
def replicas(isolated_home: Path, pg_url: str, tmp_path: Path) -> Iterator[list[McpHome]]:
    """Three homes whose config points at one database, the first home's store migrated in."""
    first = make_home(isolated_home)
    r = first.cli("store", "migrate", "--to", pg_url)
    assert r.returncode == 0, r.stderr
    (first.root / "credentials.enc").unlink()  # from now on only the database holds it
    (first.root / "config.toml").write_text(_config(pg_url))
    homes = [first]
    for n in (2, 3):
        root = tmp_path / f"replica{n}"
        shutil.copytree(first.root / "plugins", root / "plugins")
        (root / "config.toml").write_text(_config(pg_url))
        homes.append(McpHome(root, first.password_file, first.secrets))
    yield homes


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
