"""Debugging a plugin through the real CLI: a failure's log lines and traceback with
``request --debug`` / ``VULTRINO_LOG=debug`` (scrubbed, one line without), ``vultrino plugin
logs`` (a bounded 0600 file per plugin that never holds a secret), manifest errors that name the
author's file once, and unknown credential types that name the bundled plugin defining them.

Every command runs as ``python -m vultrino`` in a subprocess on a real home with a real sealed
store; the plugins are tiny WAT guests that log what they were sent (the credential included)
and then fail or trap.
"""

from __future__ import annotations

import json
import os
import queue
import stat
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.guests import abi2, data_string
from tests.leakcheck import LeakCheck, forms_of
from vultrino._msgpack import packb

PASSWORD = "debugging plugins is fine, leaking is not"
SECRET = "debug-secret-9f1c2e7a4b3d5e60"
HANG_GUARD_S = 120.0

MANIFEST = """\
[plugin]
name = "{name}"
version = "1.0.0"
wasm_module = "{module}.wasm"

[[credential_types]]
name = "key"

[[credential_types.fields]]
name = "token"
type = "password"
required = true
secret = true

[[actions]]
name = "go"
credential_type = "key"
"""

LOG_IMPORT = '(import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32 i32)))'
FAILURE = packb({"error": {"code": "failed", "message": "the upstream said no"}})
HELLO = b"about to call upstream"
PANIC = b"panicked at src/lib.rs:7: index out of bounds"


def tattler() -> bytes:
    """Logs a fixed line, then the whole request (the credential's secret with it), then
    answers with an error."""
    extra = (
        f"(data (i32.const 65536) {data_string(FAILURE)})"
        f"(data (i32.const 66000) {data_string(HELLO)})"
    )
    body = (
        f"(call $log (i32.const 1) (i32.const 66000) (i32.const {len(HELLO)}))"
        "(call $log (i32.const 3) (local.get $ptr) (local.get $len))"
        f"(call $respond (i32.const 65536) (i32.const {len(FAILURE)}))"
    )
    return abi2(body, imports=LOG_IMPORT, extra=extra)


def trapper() -> bytes:
    """Logs a line (as a panic message would be), then traps."""
    extra = f"(data (i32.const 66000) {data_string(PANIC)})"
    body = f"(call $log (i32.const 3) (i32.const 66000) (i32.const {len(PANIC)})) unreachable"
    return abi2(body, imports=LOG_IMPORT, extra=extra)


def plugin_source(dest: Path, name: str, wasm: bytes) -> Path:
    module = name.replace("-", "_")
    d = dest / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "plugin.toml").write_text(MANIFEST.format(name=name, module=module), encoding="utf-8")
    (d / f"{module}.wasm").write_bytes(wasm)
    return d


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    r = cli(*args)
    assert r.returncode == 0, f"vultrino {' '.join(args)}: {r.stderr}"
    return r


def no_secret(text: str) -> None:
    for form, value in forms_of(SECRET).items():
        assert value.decode() not in text, f"the secret leaked ({form})"


@pytest.fixture
def home(isolated_home: Path, monkeypatch: pytest.MonkeyPatch, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    monkeypatch.setenv("VULTRINO_PASSWORD", PASSWORD)
    leakcheck.add(PASSWORD, SECRET)
    return isolated_home


@pytest.fixture
def debug_home(home: Path, tmp_path: Path) -> Path:
    """The home with the tattler and the trapper installed, and a credential of each."""
    ok("init")
    for name, wasm in (("tattler", tattler()), ("trapper", trapper())):
        ok("plugin", "install", str(plugin_source(tmp_path / "src", name, wasm)))
        ok("add", "--alias", name, "--type", f"plugin:{name}:key", "--field", f"token={SECRET}")
    return home


# --- request --debug ---------------------------------------------------------------------------


def test_a_failure_is_one_line_without_debug(debug_home: Path) -> None:
    r = cli("request", "tattler", "--action", "go")
    assert r.returncode == 7, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: plugin tattler, action go failed (failed): the upstream said no"
    ]
    r = cli("request", "tattler", "--action", "go", "--json")
    assert json.loads(r.stdout) == {
        "error": {
            "type": "ActionFailedError",
            "message": "plugin tattler, action go failed (failed): the upstream said no",
        }
    }


@pytest.mark.parametrize("how", ["--debug", "VULTRINO_LOG=debug"])
def test_debug_prints_the_calls_log_lines_scrubbed(debug_home: Path, how: str) -> None:
    flag, env = (["--debug"], {}) if how == "--debug" else ([], {"VULTRINO_LOG": "debug"})
    r = cli("request", "tattler", "--action", "go", *flag, env=env)
    assert r.returncode == 7, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == "error: plugin tattler, action go failed (failed): the upstream said no"
    assert lines[1] == "plugin log (2 lines from this call):"
    assert lines[2] == f"  [info] {HELLO.decode()}"
    assert lines[3].startswith("  [error] ") and "[REDACTED]" in lines[3]
    no_secret(r.stderr)


def test_json_error_gains_the_scrubbed_detail_only_under_debug(debug_home: Path) -> None:
    r = cli("request", "tattler", "--action", "go", "--json", "--debug")
    assert r.returncode == 7
    error = json.loads(r.stdout)["error"]
    assert error["type"] == "ActionFailedError"
    log = error["detail"]["log"]
    assert [e["level"] for e in log] == ["info", "error"]
    assert log[0]["message"] == HELLO.decode()
    assert "[REDACTED]" in log[1]["message"]
    no_secret(r.stdout + r.stderr)


def test_a_trap_shows_what_the_guest_logged_before_it(debug_home: Path) -> None:
    plain = cli("request", "trapper", "--action", "go")
    assert plain.returncode == 9, plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1
    assert "index out of bounds" not in plain.stderr
    r = cli("request", "trapper", "--action", "go", "--debug")
    assert r.returncode == 9
    assert "  [error] panicked at src/lib.rs:7: index out of bounds" in r.stderr.splitlines()


def test_a_bad_vultrino_log_is_refused_before_anything_runs(debug_home: Path) -> None:
    r = cli("list", env={"VULTRINO_LOG": "verbose"})
    assert r.returncode == 2
    assert "VULTRINO_LOG='verbose' is not a log level; use one of debug, info, warn, error" in (
        r.stderr
    )
    assert r.stdout == ""


# --- plugin logs -------------------------------------------------------------------------------


def test_plugin_logs_keeps_what_the_plugin_logged_without_the_secret(debug_home: Path) -> None:
    cli("request", "tattler", "--action", "go")
    cli("request", "tattler", "--action", "go")
    logfile = debug_home / "logs" / "tattler.log"
    assert stat.S_IMODE(logfile.stat().st_mode) == 0o600
    assert stat.S_IMODE(logfile.parent.stat().st_mode) == 0o700
    raw = logfile.read_bytes()
    assert raw.count(HELLO) == 2 and b"[REDACTED]" in raw
    for form, value in forms_of(SECRET).items():
        assert value not in raw, f"the secret reached the log file ({form})"

    r = ok("plugin", "logs", "tattler", "-n", "1")
    (line,) = r.stdout.splitlines()
    stamp, level, message = line.split(maxsplit=2)
    assert stamp.endswith("Z") and level == "ERROR" and "[REDACTED]" in message

    entries = json.loads(ok("plugin", "logs", "tattler", "--json").stdout)
    assert [e["level"] for e in entries] == ["info", "error", "info", "error"]
    assert entries[0]["message"] == HELLO.decode()
    assert set(entries[0]) == {"time", "level", "message"}


def test_plugin_logs_of_a_quiet_or_unknown_plugin(debug_home: Path) -> None:
    quiet = cli("plugin", "logs", "trapper")
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert "plugin trapper has logged nothing yet" in quiet.stderr
    unknown = cli("plugin", "logs", "ghost")
    assert unknown.returncode == 5
    assert "no plugin named 'ghost'" in unknown.stderr


def test_plugin_logs_follow_prints_lines_as_they_come(debug_home: Path) -> None:
    cli("request", "tattler", "--action", "go")
    with subprocess.Popen(
        [sys.executable, "-m", "vultrino", "plugin", "logs", "tattler", "-n", "2", "--follow",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
        reader.start()
        try:
            seen = [_next(lines) for _ in range(2)]  # the last two, already there
            cli("request", "tattler", "--action", "go")  # then what comes while following
            seen += [_next(lines) for _ in range(2)]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            reader.join(timeout=30)
    assert [e["level"] for e in seen] == ["info", "error", "info", "error"]
    assert seen[2]["message"] == HELLO.decode() and "[REDACTED]" in seen[3]["message"]


def _next(lines: queue.Queue[str]) -> dict[str, Any]:
    """The next JSON line ``--follow`` printed; the wait is a guard against a hang, never a
    performance assertion."""
    try:
        data: dict[str, Any] = json.loads(lines.get(timeout=HANG_GUARD_S))
    except queue.Empty:
        raise AssertionError("plugin logs --follow printed nothing") from None
    return data


# --- manifest errors ---------------------------------------------------------------------------


def _broken(dest: Path) -> Path:
    d = plugin_source(dest, "broken", tattler())
    manifest = d / "plugin.toml"
    manifest.write_text(manifest.read_text().replace('type = "password"', 'type = "passwd"'))
    return d


def test_a_manifest_error_names_the_authors_file_once(home: Path, tmp_path: Path) -> None:
    source = _broken(tmp_path / "src")
    r = cli("plugin", "install", str(source))
    assert r.returncode == 5
    problem = "credential_types[0].fields[0].type: expected one of"
    assert r.stderr.startswith(f"error: {source / 'plugin.toml'} (plugin broken): invalid")
    assert r.stderr.count(problem) == 1
    assert ".staging-" not in r.stderr
    assert not (home / "plugins" / "broken").exists()


def test_a_manifest_error_in_an_archive_names_the_file_inside_it(
    home: Path, tmp_path: Path
) -> None:
    source = _broken(tmp_path / "src")
    archive = tmp_path / "broken-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="broken-1.0")
    r = cli("plugin", "install", str(archive))
    assert r.returncode == 5
    assert r.stderr.startswith(f"error: broken-1.0/plugin.toml in {archive} (plugin broken)")
    assert ".staging-" not in r.stderr
    assert r.stderr.count("fields[0].type: expected one of") == 1


def test_reload_of_a_broken_manifest_prints_each_problem_once(debug_home: Path) -> None:
    manifest = debug_home / "plugins" / "tattler" / "plugin.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.0.0"', 'version = "one"'))
    r = cli("plugin", "reload", "tattler")
    assert r.returncode == 5
    assert r.stderr.startswith(f"error: {manifest} (plugin tattler): invalid plugin manifest")
    assert r.stderr.count('plugin.version: "one" is not a semver version') == 1


# --- unknown credential types ------------------------------------------------------------------


def test_an_unknown_type_names_the_bundled_plugin_that_defines_it(home: Path) -> None:
    ok("init")
    r = cli("add", "--alias", "otp", "--type", "totp", "--field", "secret=GEZDGNBVGY3TQOJQ")
    assert r.returncode == 4
    assert r.stderr.strip() == (
        "error: unknown credential type 'totp'; the bundled plugin 'totp' provides it: "
        "vultrino plugin install totp (then use --type plugin:totp:totp)"
    )
    r = cli("add", "--alias", "k", "--type", "plugin:hmac:hmac_key", "--field", "key=x")
    assert "the bundled plugin 'hmac' provides it: vultrino plugin install hmac" in r.stderr
    ok("plugin", "install", "totp")
    r = cli("add", "--alias", "otp", "--type", "totp", "--field", "secret=GEZDGNBVGY3TQOJQ")
    assert "did you mean plugin:totp:totp" in r.stderr and "bundled" not in r.stderr
    r = cli("add", "--alias", "x", "--type", "no_such_type", "--field", "a=b")
    assert "bundled" not in r.stderr
