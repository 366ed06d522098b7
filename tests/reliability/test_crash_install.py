"""Crash safety of ``vultrino plugin install --force``: SIGKILL at any moment leaves either the
complete old plugin or the complete new one, and the registry still loads it.

Two harnesses (``installcrash.py``): seeded random kills (50 rounds here, two of them plain
``python -m vultrino`` processes; ``scripts/evidence.py`` runs hundreds), and a kill right after
each filesystem mutation of an install in turn, so every intermediate state is judged. The
store's own SIGKILL harness is in tests/integration/test_store_processes.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TEST_ENGINE
from tests.reliability import installcrash
from tests.reliability.installcrash import Bench, Report

ROUNDS = 50
SEED = 9


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Report]:
    bench = installcrash.make_bench(tmp_path_factory.mktemp("crashpts"), engine=TEST_ENGINE or None)
    return installcrash.crash_points(bench)


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return installcrash.make_bench(tmp_path, engine=TEST_ENGINE or None)


def test_sigkill_at_random_moments_leaves_the_old_or_the_new_plugin(bench: Bench) -> None:
    report = installcrash.random_kills(
        bench, ROUNDS, seed=SEED, plain_every=25, min_kills=ROUNDS // 2
    )
    assert report.violations == []
    # The harness really interrupted installs, in both directions, and leftovers of killed
    # installs were cleaned up by the next one.
    assert report.kills >= ROUNDS // 2, report
    assert report.states["old"] > 0, report
    assert report.leftovers_seen > 0 and report.clean_installs > 0, report


def test_every_crash_point_leaves_a_complete_plugin(crash_run: tuple[list[str], Report]) -> None:
    steps, report = crash_run
    # The install really was taken apart: staging, the module cache, the swap, the cleanup.
    assert any(s.startswith("mkdir") and ".staging-" in s for s in steps), steps
    assert any(s.startswith(("rename", "renameat2")) and s.endswith("/crashy") for s in steps)
    assert report.kills == len(steps)
    assert report.violations == []
    assert report.states["old"] > 0 and report.states["new"] > 0, report


def test_the_registry_ignores_installer_leftovers_and_the_next_install_removes_them(
    crash_run: tuple[list[str], Report],
) -> None:
    _, report = crash_run
    # inspect() loads the registry after every kill and fails on anything but crashy; the
    # clean install after each kill must leave plugins/ with nothing else in it.
    assert report.leftovers_seen >= len(crash_run[0]) // 2, report
    assert report.clean_installs == report.leftovers_seen, report


def test_no_crash_point_leaves_the_plugin_missing(crash_run: tuple[list[str], Report]) -> None:
    """The replace is one atomic exchange of the two directories (renameat2 RENAME_EXCHANGE on
    Linux), so no reader ever finds ``plugins/<name>`` missing."""
    assert crash_run[1].missing == []
