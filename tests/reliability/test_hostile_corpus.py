"""The hostile plugin corpus through every way in: the Python API, the CLI and MCP.

Every guest in ``tests/fixtures/hostile`` (see ``corpus.py`` for what each does and what the host
must answer) is installed into one home as a real plugin. Each surface runs every guest once,
in a module-scoped fixture, against ONE long-lived host where the surface has one (a facade, an
MCP server process); the per-guest tests then judge what happened: the host survived, the error
is the documented one and names the plugin, the same plugin answers ``ping`` right afterwards,
and no secret reached any output (checked with the ``leakcheck`` fixture).

CI runs every guest through the API and MCP, a dozen through the in-process CLI (one per kind of
answer it must format) and four through real ``python -m vultrino`` processes; the slow test
(and ``scripts/evidence.py``) runs every guest through real CLI processes.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_ENGINE
from tests.leakcheck import LeakCheck
from tests.reliability import corpus, surfaces
from tests.reliability.corpus import CorpusHome, Guest, Trial

GUESTS = corpus.guests()
ENGINE = TEST_ENGINE or None

#: The in-process CLI in the CI-sized run: one guest per kind of answer the CLI must format
#: (each error family, refusals, odd results); every guest runs through real processes in the
#: slow run.
CLI_GUESTS = (
    "trap_unreachable",
    "memory_bomb",
    "bad_result_pointer",
    "oversized_result",
    "abi1_bad_json",
    "error_secret",
    "growing_result",
    "wasi_file_open",
    "invalid_utf8_log",
    "result_secret_hex",
    "log_secret",
    "missing_export",
    "odd_result_types",
)
#: Real CLI processes in the CI-sized run: the guests whose effect is process-wide.
PROCESS_GUESTS = ("stdout_write", "env_read", "deep_recursion", "unknown_import")

#: Known host defects, reported and awaiting a fix: ``(guest, surface) -> reason``. Each such
#: test is a strict xfail, so it turns into a failure the moment the defect is fixed and the
#: marker cannot outlive the bug. (Every defect the corpus found so far has been fixed.)
KNOWN: dict[tuple[str, str], str] = {}


def params(surface: str, chosen: list[Guest]) -> list[Any]:
    out = []
    for g in chosen:
        reason = KNOWN.get((g.stem, surface))
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        out.append(pytest.param(g, id=g.stem, marks=marks))
    return out


def check(trial: Trial, guest: Guest, leakcheck: LeakCheck, home: CorpusHome) -> None:
    """The trial's problems plus any secret in what it saw; reported in the test body."""
    leakcheck.add(*home.secrets)
    leaks = trial.scan(leakcheck)
    leakcheck.findings.clear()  # reported below, where a strict xfail can see them
    problems = corpus.judge(guest, trial) + [f"secret leaked: {leak}" for leak in leaks]
    assert not problems, f"{guest.stem} via {trial.surface}:\n  " + "\n  ".join(problems)


# --- the home and the runs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> CorpusHome:
    return corpus.make_home(tmp_path_factory.mktemp("hostile"), engine=ENGINE)


@pytest.fixture(scope="module")
def api_trials(home: CorpusHome) -> dict[str, Trial]:
    """Every guest through ONE facade, in turn."""
    with home.open() as v:
        return {g.stem: surfaces.api_trial(home, v, g) for g in GUESTS}


@pytest.fixture(scope="module")
def cli_trials(home: CorpusHome) -> dict[str, Trial]:
    run = surfaces.cli_in_process(home)
    return {g.stem: surfaces.cli_trial(home, run, g, "cli") for g in GUESTS if g.stem in CLI_GUESTS}


@pytest.fixture(scope="module")
def mcp_run(home: CorpusHome) -> Iterator[tuple[dict[str, Trial], list[str]]]:
    """Every guest through ONE MCP server process, in turn; and what its stdout carried."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        with surfaces.mcp_server(home, errlog) as client:
            trials = {g.stem: surfaces.mcp_trial(home, client, errlog, g) for g in GUESTS}
            channel = surfaces.stdout_problems(client)
        yield trials, channel


# --- the tests ---------------------------------------------------------------------------------


def test_every_wat_file_has_an_expectation_and_builds(tmp_path: Path) -> None:
    chosen = corpus.guests()  # raises when a file and the expectations disagree
    assert len(chosen) >= 30
    for g in chosen:
        built = corpus.build_plugin(g, tmp_path)
        assert (built / g.module).read_bytes()[:4] == b"\0asm"
        assert g.description, f"{g.stem}.wat needs a first-line comment saying what it does"


def test_refused_guests_were_refused_at_install_and_left_no_trace(home: CorpusHome) -> None:
    refused = {g.stem for g in GUESTS if g.refused}
    assert set(home.install_errors) == refused
    for stem, (cls, _) in home.install_errors.items():
        assert cls == corpus.EXPECT[stem].refused[0]  # type: ignore[index]
    staging = [p.name for p in (home.root / "plugins").iterdir() if p.name.startswith(".")]
    assert staging == []


@pytest.mark.parametrize("guest", params("api", GUESTS))
def test_api(
    guest: Guest, api_trials: dict[str, Trial], home: CorpusHome, leakcheck: LeakCheck
) -> None:
    check(api_trials[guest.stem], guest, leakcheck, home)


@pytest.mark.parametrize("guest", params("cli", [g for g in GUESTS if g.stem in CLI_GUESTS]))
def test_cli(
    guest: Guest, cli_trials: dict[str, Trial], home: CorpusHome, leakcheck: LeakCheck
) -> None:
    check(cli_trials[guest.stem], guest, leakcheck, home)


@pytest.mark.parametrize(
    "guest", params("cli-process", [g for g in GUESTS if g.stem in PROCESS_GUESTS])
)
def test_cli_process(guest: Guest, home: CorpusHome, leakcheck: LeakCheck) -> None:
    trial = surfaces.cli_trial(home, surfaces.cli_subprocess(home), guest, "cli-process")
    check(trial, guest, leakcheck, home)


def test_cli_json_error_is_one_json_document(home: CorpusHome) -> None:
    """docs/cli.md: with --json an error is ``{"error": {"type", "message"}}`` on stdout."""
    guest = corpus.by_stem("trap_unreachable")
    code, out, _ = surfaces.json_error_document(surfaces.cli_in_process(home), guest.alias)
    assert code == 9
    error = json.loads(out)["error"]
    assert error["type"] == "PluginTrapError"
    assert guest.plugin in error["message"]


@pytest.mark.parametrize("guest", params("mcp", GUESTS))
def test_mcp(
    guest: Guest,
    mcp_run: tuple[dict[str, Trial], list[str]],
    home: CorpusHome,
    leakcheck: LeakCheck,
) -> None:
    check(mcp_run[0][guest.stem], guest, leakcheck, home)


def test_mcp_channel_carried_only_json_rpc(mcp_run: tuple[dict[str, Trial], list[str]]) -> None:
    """stdout_write and the floods wrote forged JSON-RPC to fd 1: none of it may show."""
    assert mcp_run[1] == []


def test_no_secret_in_any_file_of_the_home(
    home: CorpusHome,
    api_trials: dict[str, Trial],
    cli_trials: dict[str, Trial],
    mcp_run: tuple[dict[str, Trial], list[str]],
    leakcheck: LeakCheck,
) -> None:
    """After every run: audit.log, .installed.json, the module cache hold no secret."""
    leakcheck.add(*home.secrets)
    leakcheck.scan_home(home.root)
    audit = (home.root / "audit.log").read_text(encoding="utf-8")
    assert audit.count('"action":"misbehave"') >= len(GUESTS)  # the runs really happened


def test_the_home_stays_private_after_every_run(
    home: CorpusHome,
    api_trials: dict[str, Trial],
    mcp_run: tuple[dict[str, Trial], list[str]],
) -> None:
    """Other local users can read nothing: the home, plugins and cache directories are 0700,
    the store, the audit log and compiled modules 0600; nothing is group- or world-writable."""

    def mode(p: Path) -> int:
        return p.stat().st_mode & 0o777

    root = home.root
    assert mode(root) == 0o700
    assert mode(root / "plugins") == 0o700 and mode(root / "cache") == 0o700
    assert mode(root / "credentials.enc") == 0o600 and mode(root / "audit.log") == 0o600
    assert [mode(p) for p in (root / "cache").iterdir()] == [0o600] * len(
        list((root / "cache").iterdir())
    )
    writable = [str(p) for p in root.rglob("*") if p.stat().st_mode & 0o022]
    assert writable == []


@pytest.mark.slow
def test_every_guest_through_real_cli_processes(home: CorpusHome, leakcheck: LeakCheck) -> None:
    run = surfaces.cli_subprocess(home)
    leakcheck.add(*home.secrets)
    failures = []
    for g in GUESTS:
        trial = surfaces.cli_trial(home, run, g, "cli-process")
        problems = corpus.judge(g, trial) + trial.scan(leakcheck)
        if problems and (g.stem, "cli-process") not in KNOWN:
            failures.append(f"{g.stem}: {problems}")
    leakcheck.findings.clear()  # the known ones are reported by their own xfail tests
    assert not failures
