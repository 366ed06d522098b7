"""Shared test isolation: no test touches a real home, a real password or real plugins.

``VULTRINO_TEST_ENGINE`` (read once, before the environment is cleared) makes every test that
goes through the facade, the CLI or MCP use that engine: CI runs the suite on Python 3.11 with
wasmtime and again on Python 3.10 with wasmer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.leakcheck import LeakCheck

TEST_ENGINE = os.environ.get("VULTRINO_TEST_ENGINE", "")


def pytest_report_header(config: pytest.Config) -> str:
    return f"vultrino engine for facade/CLI/MCP tests: {TEST_ENGINE or 'wasmtime (default)'}"


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Point VULTRINO_HOME at a fresh directory and clear every other VULTRINO_* variable."""
    for key in list(os.environ):
        if key.startswith("VULTRINO_"):
            monkeypatch.delenv(key, raising=False)
    home = tmp_path_factory.mktemp("vhome")
    monkeypatch.setenv("VULTRINO_HOME", str(home))
    if TEST_ENGINE:
        monkeypatch.setenv("VULTRINO_ENGINE", TEST_ENGINE)
    yield home


@pytest.fixture
def leakcheck(isolated_home: Path, capfd: pytest.CaptureFixture[str]) -> Iterator[LeakCheck]:
    """Register secrets with ``leakcheck.add(...)``; at teardown the test's captured output and
    every file of the home (but the sealed store) must hold none of them, in any encoding."""
    check = LeakCheck()
    yield check
    out, errout = capfd.readouterr()
    check.scan_all([("stdout", out), ("stderr", errout)], isolated_home)
    check.assert_clean()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """A throwaway PostgreSQL cluster for the session (tests/pgcluster.py); skipped only when
    PostgreSQL's binaries are absent."""
    from tests.pgcluster import start_cluster

    cluster = start_cluster()
    yield cluster
    cluster.remove()


@pytest.fixture
def pg_url(pg_cluster: object) -> str:
    """The URL of a fresh, empty database in the session's cluster."""
    from tests.pgcluster import Cluster

    assert isinstance(pg_cluster, Cluster)
    return pg_cluster.new_database()
