"""The remote CLI: `vultrino --remote URL --key K` (or VULTRINO_API_URL / VULTRINO_API_KEY)
runs list, info, request and audit against a real `vultrino serve` on 127.0.0.1, through
`python -m vultrino` in its own process, with no store on the client's side."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e.mcp_helpers import ECHO_SECRET, HANG_GUARD_S, McpHome, make_home
from tests.e2e.serve_helpers import audit_records, make_key, serve
from tests.leakcheck import LeakCheck
from tests.localhttp import Recorder, serving


@pytest.fixture
def home(isolated_home: Path) -> McpHome:
    return make_home(isolated_home)


def remote_cli(*args: str, url: str | None = None, key: str | None = None,
               input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``python -m vultrino ARGS`` on a machine with no Vultrino home: an empty VULTRINO_HOME,
    no password. ``url``/``key`` go in VULTRINO_API_URL / VULTRINO_API_KEY."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    env["VULTRINO_HOME"] = tempfile.mkdtemp(prefix="vremote-")
    if url is not None:
        env["VULTRINO_API_URL"] = url
    if key is not None:
        env["VULTRINO_API_KEY"] = key
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert not list(Path(env["VULTRINO_HOME"]).iterdir()), "the remote CLI wrote a home"
    return r


def test_list_info_request_and_audit_answer_as_they_do_locally(
    home: McpHome, leakcheck: LeakCheck
) -> None:
    admin = make_key(home, "ops", "admin")
    leakcheck.add(admin, *home.secrets)
    with serve(home) as s:
        # the same output as the local command, in every format
        for args in (
            ("list", "--json"),
            ("list",),
            ("list", "--field", "0.alias"),
            ("info", "echo-one", "--json"),
            ("info", "echo-one"),
            ("info", "github", "--field", "allow.0"),
        ):
            here, there = home.cli(*args), remote_cli(*args, url=s.url, key=admin)
            assert there.returncode == here.returncode == 0, there.stderr
            assert there.stdout == here.stdout, args
        assert "github" in remote_cli("list", url=s.url, key=admin).stdout

        # a plugin action: --param strings are converted to the declared types on the server
        r = remote_cli("request", "echo-one", "--action", "echo", "--param", "message=hi",
                       "--param", "n=3", "--json", url=s.url, key=admin)  # fmt: skip
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        assert result["params"] == {"message": "hi", "n": 3}
        assert ECHO_SECRET not in r.stdout  # scrubbed by the server's pipeline
        one = remote_cli("request", "echo-one", "-a", "echo", "-p", "message=hi",
                         "--field", "params.message", url=s.url, key=admin)  # fmt: skip
        assert (one.returncode, one.stdout) == (0, "hi\n")

        # the same exit codes as locally, for each kind of refusal
        for args, code in (
            (("info", "nope"), 4),  # CredentialNotFoundError
            (("request", "echo-one", "--action", "echo"), 6),  # ParameterError (no message)
            (("request", "echo-one", "--action", "nosuch"), 5),  # ActionNotFoundError
            (("request", "echo-one", "-a", "echo", "-p", "message=x", "-p", "n=many"), 6),
            (("request", "github", "https://example.com/"), 8),  # outside the allowlist
        ):
            here, there = home.cli(*args), remote_cli(*args, url=s.url, key=admin)
            assert (here.returncode, there.returncode) == (code, code), (args, there.stderr)
            assert there.stderr.startswith("error: ")
        missing = remote_cli("info", "echo-on", url=s.url, key=admin)
        assert "did you mean 'echo-one'" in missing.stderr

        # audit: the server's records, with the CLI's filters and formats
        r = remote_cli("audit", "--json", "--alias", "echo-one", "--outcome", "ok",
                       url=s.url, key=admin)  # fmt: skip
        assert r.returncode == 0, r.stderr
        records = [x for x in json.loads(r.stdout) if x["source"] != "admin"]
        assert len(records) == 2 and {x["source"] for x in records} == {"api"}
        assert {x["key"] for x in records} == {"key:ops"}
        assert r.stdout == home.cli("audit", "--json", "--alias", "echo-one",
                                    "--outcome", "ok").stdout  # fmt: skip
        table = remote_cli("audit", "--limit", "1", url=s.url, key=admin)
        assert table.returncode == 0 and table.stdout.startswith("TIME")
        assert len(table.stdout.splitlines()) == 2
        follow = remote_cli("audit", "--follow", url=s.url, key=admin)
        assert follow.returncode == 6 and "--follow" in follow.stderr
        leakcheck.scan(s.log(), "server stderr")


def test_request_alias_url_goes_through_the_server(home: McpHome, leakcheck: LeakCheck) -> None:
    with serving(Recorder()) as target:
        key_file = home.root.parent / "svc-key"
        key_file.write_text("svc-secret-value-123", encoding="utf-8")
        leakcheck.add("svc-secret-value-123")
        added = home.cli("add", "--alias", "svc", "--type", "api_key", "--field",
                         f"key=@{key_file}", "--allow", f"{target.base}/api/*")  # fmt: skip
        assert added.returncode == 0, added.stderr
        admin = make_key(home, "ops", "admin")
        leakcheck.add(admin)
        with serve(home) as s:
            r = remote_cli("request", "svc", f"{target.base}/api/items?page=2",
                           url=s.url, key=admin)  # fmt: skip
            assert r.returncode == 0, r.stderr
            assert r.stdout == '{"ok": true}\n' and r.stderr == "HTTP 200\n"
            posted = remote_cli("request", "svc", f"{target.base}/api/items", "-X", "POST",
                                "-H", "X-Trace: 7", "-d", "-", "--json",
                                url=s.url, key=admin, input="payload")  # fmt: skip
            assert posted.returncode == 0, posted.stderr
            assert json.loads(posted.stdout)["status"] == 200
            outside = remote_cli("request", "svc", f"{target.base}/admin", url=s.url, key=admin)
            assert outside.returncode == 8
        assert target.paths == ["GET /api/items?page=2", "POST /api/items"]
        assert target.auth[0] == "Bearer svc-secret-value-123"  # sent upstream, never shown
    recs = [r for r in audit_records(home) if r.get("alias") == "svc" and r["source"] == "api"]
    assert [(r["method"], r["outcome"]) for r in recs] == [
        ("GET", "ok"),
        ("POST", "ok"),
        ("GET", "denied"),
    ]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_refused_key_and_what_remote_does_not_do(
    home: McpHome, leakcheck: LeakCheck
) -> None:
    reader = make_key(home, "look", "read-only")
    leakcheck.add(reader)
    down = remote_cli("list", url=f"http://127.0.0.1:{_closed_port()}", key=reader)
    assert down.returncode == 11
    assert "cannot reach http://127.0.0.1:" in down.stderr and "vultrino serve" in down.stderr
    bad_url = remote_cli("list", url="ftp://example.invalid", key=reader)
    assert bad_url.returncode == 2 and "VULTRINO_API_URL" in bad_url.stderr
    with serve(home) as s:
        wrong = remote_cli("list", url=s.url, key="vk_" + "x" * 40)
        assert wrong.returncode == 8
        assert "refused the API key" in wrong.stderr and "VULTRINO_API_KEY" in wrong.stderr
        assert "x" * 40 not in wrong.stderr + wrong.stdout
        nokey = remote_cli("list", url=s.url)
        assert nokey.returncode == 8 and "--key" in nokey.stderr

        # a read-only key lists but cannot use a credential, nor read the audit log
        assert remote_cli("list", url=s.url, key=reader).returncode == 0
        used = remote_cli("request", "echo-one", "-a", "echo", "-p", "message=x",
                          url=s.url, key=reader)  # fmt: skip
        assert used.returncode == 8 and "execute" in used.stderr
        assert remote_cli("audit", url=s.url, key=reader).returncode == 8

        # --key on the command line works, with the warning secrets on argv get
        argv = remote_cli("--remote", s.url, "--key", reader, "list", "--json")
        assert argv.returncode == 0, argv.stderr
        assert "other local users" in argv.stderr and reader not in argv.stderr
        assert {c["alias"] for c in json.loads(argv.stdout)} == {"echo-one", "github"}

        # with --remote only the four commands run; VULTRINO_API_URL leaves the others local
        add = remote_cli("--remote", s.url, "add", "--alias", "x", "--type", "api_key",
                         key=reader)  # fmt: skip
        assert add.returncode == 2 and "list, info, request, audit" in add.stderr
        verify = remote_cli("--remote", s.url, "audit", "verify", key=reader)
        assert verify.returncode == 6 and "server's host" in verify.stderr
        local = remote_cli("types", url=s.url, key=reader)
        assert local.returncode == 0 and "api_key" in local.stdout
        lone = remote_cli("--key", reader, "list")
        assert lone.returncode == 2 and "--remote" in lone.stderr
        leakcheck.scan(s.log(), "server stderr")
