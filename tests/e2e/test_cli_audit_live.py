"""What the audit log says about HTTP requests, and `vultrino audit --follow`, through the real
CLI in real processes against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from queue import Queue

import pytest

from tests.leakcheck import LeakCheck
from tests.localhttp import Recorder, serving
from vultrino import Vultrino

PASSWORD = "correct horse battery staple, audit live"
KEY = "ak-audit-live-5f0e2d9c7b1a4e38"


@pytest.fixture
def home(isolated_home: Path, monkeypatch: pytest.MonkeyPatch, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    monkeypatch.setenv("VULTRINO_PASSWORD", PASSWORD)
    leakcheck.add(PASSWORD, KEY)
    return isolated_home


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args], capture_output=True, text=True, timeout=120
    )


def calls(home: Path) -> list[dict[str, object]]:
    r = cli("audit", "--json")
    assert r.returncode == 0, r.stderr
    return [rec for rec in json.loads(r.stdout) if rec["source"] != "admin"]


def test_http_requests_are_recorded_with_method_and_url(home: Path, leakcheck: LeakCheck) -> None:
    with serving(Recorder()) as server:
        assert cli("init").returncode == 0
        r = cli("add", "--alias", "svc", "--type", "api_key", "--field", f"key=@{_key_file(home)}",
                "--allow", f"{server.base}/api/*")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert cli("request", "svc", f"{server.base}/api/items?page=2").returncode == 0
        assert (
            cli("request", "svc", f"{server.base}/api/items", "-X", "POST", "-d", "x").returncode
            == 0
        )
        # outside the allowlist: refused, and the record says what was asked for
        assert cli("request", "svc", f"{server.base}/admin").returncode == 8
        # a password written into the URL and the credential's own secret in a query are not kept
        cli("request", "svc", "http://me:hunter2@127.0.0.1:1/api/x")
        cli("request", "svc", f"{server.base}/other?token={KEY}")
    records = calls(home)
    leakcheck.scan(json.dumps(records), "audit records")
    got = [(rec["method"], rec["url"], rec["outcome"]) for rec in records]
    assert got[:3] == [
        ("GET", f"{server.base}/api/items?page=2", "ok"),
        ("POST", f"{server.base}/api/items", "ok"),
        ("GET", f"{server.base}/admin", "denied"),
    ]
    assert got[3][1] == "http://me:***@127.0.0.1:1/api/x"
    assert "hunter2" not in (home / "audit.log").read_text()
    assert KEY not in got[4][1] and got[4][1].startswith(f"{server.base}/other?token=")
    table = cli("audit").stdout
    assert f"GET {server.base}/admin" in table


def _key_file(home: Path) -> Path:
    path = home.parent / "key.txt"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


def _lines(stream: object) -> Queue[str]:
    """The lines a process writes, on a queue filled by a thread (reads never block the test)."""
    q: Queue[str] = Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


def test_follow_prints_new_records_as_they_are_written_and_ctrl_c_exits_130(home: Path) -> None:
    assert cli("init").returncode == 0
    with Vultrino.open(home, PASSWORD) as v:
        v.add_credential("k1", "api_key", {"key": KEY}, allow=["https://example.invalid/*"])
    with subprocess.Popen(
        [sys.executable, "-m", "vultrino", "audit", "--follow", "--json", "--alias", "k2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        try:
            out = _lines(proc.stdout)
            with Vultrino.open(home, PASSWORD) as v:
                v.add_credential("k2", "api_key", {"key": KEY}, allow=["https://example.invalid/*"])
                v.add_credential("k3", "api_key", {"key": KEY}, allow=["https://example.invalid/*"])
                with pytest.raises(Exception):  # noqa: B017 - the record is what is tested
                    v.execute("k2", "request", {"url": "https://elsewhere.invalid/"})
                v.remove_credential("k3")
                v.remove_credential("k2")
            # k1 (written before) and k3 do not match the filter: the lines are k2's, in order
            seen = [json.loads(out.get(timeout=60)) for _ in range(3)]
            assert [(r["action"], r["alias"], r["outcome"]) for r in seen] == [
                ("credential.add", "k2", "ok"),
                ("request", "k2", "denied"),
                ("credential.remove", "k2", "ok"),
            ]
            assert seen[1]["url"] == "https://elsewhere.invalid/"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 130
        finally:
            if proc.poll() is None:  # a failed check: never wait on a follower forever
                proc.kill()


def test_a_call_refused_before_its_plugin_is_known_lists_its_action_alone(home: Path) -> None:
    """An unknown credential's refusal has no plugin: the table shows the action, not
    ``None:request``."""
    assert cli("init").returncode == 0
    assert cli("request", "nope", "http://127.0.0.1:1/x").returncode != 0
    r = cli("audit")
    assert r.returncode == 0, r.stderr
    assert "None" not in r.stdout, r.stdout
    row = next(line for line in r.stdout.splitlines() if "nope" in line)
    assert " request " in f" {row} ", row
