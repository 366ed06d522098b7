"""The original Vultrino's global flags, through the real CLI (subprocesses): `-v`/`-vv` and
config.toml's `[logging]` (the diagnostic log on stderr, never a secret in it), and
`-c/--config PATH` / `VULTRINO_CONFIG` (another config file; the home does not move)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mcp_helpers import McpHome, make_home
from tests.localhttp import Recorder, serving

SECRET = "sk-logging-test-6d0c1e9b2a7f4853"


@pytest.fixture
def server() -> Iterator[Recorder]:
    with serving(Recorder()) as srv:
        yield srv


@pytest.fixture
def home(isolated_home: Path, tmp_path: Path, server: Recorder) -> McpHome:
    h = make_home(isolated_home)
    key = tmp_path / "key.txt"
    key.write_text(SECRET + "\n")
    r = h.cli(
        "add", "-a", "local", "-t", "api_key", "--field", f"key=@{key}",
        "--allow", f"{server.base}/*",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    h.secrets.append(SECRET)
    return h


def _cli(home: McpHome, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        env=home.env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _no_secret(home: McpHome, *texts: str) -> None:
    for text in texts:
        for secret in home.secrets:
            assert secret not in text


def test_vv_logs_debug_and_info_lines_and_never_a_secret(home: McpHome, server: Recorder) -> None:
    r = home.cli("-vv", "request", "local", f"{server.base}/v1/user")
    assert r.returncode == 0, r.stderr
    assert server.auth == [f"Bearer {SECRET}"]  # the secret was used, so it was at hand
    assert json.loads(r.stdout) == {"ok": True}  # stdout is still the body alone
    lines = r.stderr.splitlines()
    assert any(" DEBUG " in x and "vultrino.pipeline" in x and "parameters:" in x for x in lines)
    call = [x for x in lines if " INFO " in x and "vultrino.pipeline: call" in x]
    assert len(call) == 1
    assert "alias=local" in call[0] and "outcome=ok" in call[0] and "source=cli" in call[0]
    assert any("store opened" in x for x in lines)

    act = home.cli("-vv", "action", "echo-one", "echo.echo", "-p", '{"message": "hi"}')
    assert act.returncode == 0, act.stderr
    assert "vultrino.pipeline: call alias=echo-one plugin=echo action=echo" in act.stderr

    failed = home.cli("-vv", "request", "local", "https://elsewhere.example/x")
    assert failed.returncode != 0
    assert "outcome=denied" in failed.stderr
    _no_secret(home, r.stderr, act.stderr, act.stdout, failed.stderr, failed.stdout)


def test_v_is_info_only_and_no_flag_logs_nothing(home: McpHome, server: Recorder) -> None:
    info = home.cli("-v", "request", "local", f"{server.base}/v1/a")
    assert info.returncode == 0, info.stderr
    assert "vultrino.pipeline: call" in info.stderr and " DEBUG " not in info.stderr
    quiet = home.cli("request", "local", f"{server.base}/v1/b")
    assert quiet.returncode == 0, quiet.stderr
    assert "vultrino." not in quiet.stderr and quiet.stderr.strip() == "HTTP 200"


def test_logging_section_json_writes_one_object_per_line(home: McpHome, server: Recorder) -> None:
    (home.root / "config.toml").write_text('[logging]\nlevel = "info"\nformat = "json"\n')
    r = home.cli("request", "local", f"{server.base}/v1/j")
    assert r.returncode == 0, r.stderr
    logged = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    assert logged, r.stderr
    for entry in logged:
        assert {"time", "level", "logger", "message"} <= set(entry)
        assert entry["level"] == "info"
    (call,) = [e for e in logged if e["logger"] == "vultrino.pipeline"]
    assert (call["alias"], call["outcome"], call["plugin"]) == ("local", "ok", "http")
    assert call["url"] == f"{server.base}/v1/j"

    deeper = home.cli("-vv", "request", "local", f"{server.base}/v1/k")  # -vv over the level
    levels = {json.loads(x)["level"] for x in deeper.stderr.splitlines() if x.startswith("{")}
    assert {"debug", "info"} <= levels
    _no_secret(home, r.stderr, deeper.stderr)


@pytest.mark.parametrize(
    ("section", "said"),
    [
        ('level = "loud"', "logging.level: expected one of error, warn, info, debug"),
        ('format = "yaml"', "logging.format: expected one of text, json"),
        ("colour = true", "logging.colour: unknown key"),
    ],
)
def test_a_bad_logging_section_is_an_error_naming_the_key(
    home: McpHome, section: str, said: str
) -> None:
    (home.root / "config.toml").write_text(f"[logging]\n{section}\n")
    r = home.cli("list")
    assert r.returncode == 2, r.stderr
    assert said in r.stderr and "config.toml" in r.stderr


def test_c_names_the_config_file_and_the_home_stays(
    home: McpHome, tmp_path: Path, server: Recorder
) -> None:
    other = tmp_path / "elsewhere" / "vultrino.toml"
    other.parent.mkdir()
    other.write_text('[logging]\nformat = "json"\nlevel = "info"\n')
    r = home.cli("-c", str(other), "list", "--json")
    assert r.returncode == 0, r.stderr
    assert "local" in {c["alias"] for c in json.loads(r.stdout)}  # the home's store
    assert any(json.loads(x)["logger"] for x in r.stderr.splitlines() if x.startswith("{"))
    assert not (home.root / "config.toml").exists()

    # it is the file that is read: its error names it (a key no environment variable overrides:
    # the wasmer leg sets VULTRINO_ENGINE, which would hide a bad `engine`)
    other.write_text('[logging]\nlevel = "nope"\n')
    bad = home.cli("--config", str(other), "list")
    assert bad.returncode == 2 and str(other) in bad.stderr and "nope" in bad.stderr

    via_env = _cli(home, "list", VULTRINO_CONFIG=str(other))
    assert via_env.returncode == 2 and str(other) in via_env.stderr

    missing = home.cli("-c", str(tmp_path / "missing.toml"), "list")
    assert missing.returncode == 2
    assert "missing.toml: no such file" in missing.stderr
    env_missing = _cli(home, "list", VULTRINO_CONFIG=str(tmp_path / "gone.toml"))
    assert env_missing.returncode == 2 and "gone.toml: no such config file" in env_missing.stderr


def test_c_reaches_the_command_options_too(home: McpHome, tmp_path: Path) -> None:
    """A config file given with -c rules a command's options: `mcp config --http` prints the
    port of its [mcp] table."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[mcp]\nport = 9911\n")
    r = home.cli("-c", str(cfg), "mcp", "config", "--http", "--form", "generic")
    assert r.returncode == 0, r.stderr
    assert "9911" in r.stdout
    assert os.environ.get("VULTRINO_CONFIG") is None  # the test process is untouched
    # a stdio client entry starts its server on the same config file
    stdio = home.cli(
        "-c", str(cfg), "mcp", "config", "--form", "claude",
        "--password-file", str(home.password_file),
    )  # fmt: skip
    assert stdio.returncode == 0, stdio.stderr
    (entry,) = json.loads(stdio.stdout)["mcpServers"].values()
    assert entry["env"]["VULTRINO_CONFIG"] == str(cfg)
