"""The first-party ``github`` plugin through the real CLI, against a local stand-in for the
GitHub API on 127.0.0.1 that checks the Authorization header Vultrino adds.

The plugin's manifest names ``api.github.com``; the test installs a copy whose ``[http] hosts``
names ``127.0.0.1`` instead and sets the credential's ``api_base`` to the local server, reached
the way the HTTP plugin's tests reach it (an allowlist pattern naming the host exactly). The
token is host-only: the plugin never holds it, and nothing the CLI prints carries it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_paste import HANG_GUARD_S, PASSWORD
from tests.leakcheck import LeakCheck
from tests.localhttp import LocalServer, serving

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ghp_e2eGithubPluginToken0123456789"


class _GitHub(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        with self.server.lock:
            self.server.paths.append(
                f"{self.command} {self.path} {self.headers.get('Authorization', '')}"
            )
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, {"message": "Bad credentials"})
            return False
        return True

    def do_POST(self) -> None:
        if not self._authorized():
            return
        length = int(self.headers.get("Content-Length") or 0)
        sent = json.loads(self.rfile.read(length))
        with self.server.lock:
            self.server.bodies.append((self.headers.get("Content-Type"), sent))
        owner_repo = self.path.split("/repos/", 1)[1].rsplit("/issues", 1)[0]
        self._answer(
            201,
            {
                "number": 42,
                "title": sent["title"],
                "body": sent.get("body"),
                "state": "open",
                "html_url": f"https://github.com/{owner_repo}/issues/42",
                "user": {"login": "octocat"},
            },
        )

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if not self.path.endswith("/issues/42"):
            self._answer(404, {"message": "Not Found"})
            return
        self._answer(
            200,
            {
                "number": 42,
                "title": "Found a bug",
                "body": "It breaks",
                "state": "open",
                "html_url": "https://github.com/octo/hello/issues/42",
                "user": {"login": "octocat"},
            },
        )


class GitHubStandIn(LocalServer):
    def __init__(self) -> None:
        super().__init__(_GitHub)
        self.bodies: list[tuple[str | None, Any]] = []


def vultrino(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        input=stdin,
        env={**os.environ, "VULTRINO_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


@pytest.fixture
def api() -> Iterator[GitHubStandIn]:
    with serving(GitHubStandIn()) as srv:
        yield srv


@pytest.fixture
def home(isolated_home: Path, tmp_path: Path, leakcheck: LeakCheck, api: GitHubStandIn) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    leakcheck.add(PASSWORD, TOKEN)
    src = tmp_path / "github"
    shutil.copytree(ROOT / "plugins" / "github", src, ignore=shutil.ignore_patterns("target"))
    manifest = (src / "plugin.toml").read_text()
    assert 'hosts = ["api.github.com"]' in manifest
    (src / "plugin.toml").write_text(manifest.replace('"api.github.com"', '"127.0.0.1"'))
    assert vultrino("init").returncode == 0
    r = vultrino("plugin", "install", str(src))
    assert r.returncode == 0, r.stderr
    assert "only to: 127.0.0.1" in r.stderr
    r = vultrino(
        "add", "--alias", "gh", "--type", "plugin:github:github_token",
        "--field", "token=-", "--field", f"api_base={api.base}",
        "--allow", f"{api.base}/repos/*", stdin=TOKEN,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "this plugin never sees: token" in r.stderr
    return isolated_home


def test_create_and_get_an_issue_with_the_token_the_host_adds(
    home: Path, api: GitHubStandIn
) -> None:
    r = vultrino(
        "request", "gh", "--action", "create_issue", "--param", "repo=octo/hello",
        "--param", "title=Found a bug", "--param", "body=It breaks", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "number": 42,
        "title": "Found a bug",
        "state": "open",
        "url": "https://github.com/octo/hello/issues/42",
        "author": "octocat",
        "body": "It breaks",
    }
    assert api.bodies == [("application/json", {"title": "Found a bug", "body": "It breaks"})]
    r = vultrino(
        "request", "gh", "--action", "get_issue", "--param", "repo=octo/hello",
        "--param", "number=42", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["title"] == "Found a bug"
    assert api.paths == [
        f"POST /repos/octo/hello/issues Bearer {TOKEN}",
        f"GET /repos/octo/hello/issues/42 Bearer {TOKEN}",
    ]


def test_errors_name_what_github_said_and_a_bad_repo_sends_nothing(
    home: Path, api: GitHubStandIn
) -> None:
    r = vultrino(
        "request", "gh", "--action", "get_issue", "--param", "repo=octo/hello",
        "--param", "number=7",
    )  # fmt: skip
    assert r.returncode != 0
    assert "GitHub answered HTTP 404" in r.stderr and "Not Found" in r.stderr
    sent = len(api.paths)
    r = vultrino(
        "request", "gh", "--action", "get_issue", "--param", "repo=../../admin",
        "--param", "number=1",
    )  # fmt: skip
    assert r.returncode != 0 and "owner/name" in r.stderr
    assert len(api.paths) == sent


def test_the_mcp_tools_are_the_narrow_ones(home: Path) -> None:
    info = json.loads(vultrino("plugin", "info", "github", "--json").stdout)
    assert [t["name"] for t in info["tools"]] == ["github_create_issue", "github_get_issue"]
    assert info["http"] == {"hosts": ["127.0.0.1"], "auth": ["bearer"]}
