"""`vultrino serve`: a real server process on 127.0.0.1, a real HTTP client (httpx), the
original Vultrino's request shapes (examples/python-client.py), keys and roles, policies,
the approvals inbox, TLS and a graceful SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.mcp_helpers import ECHO_SECRET, ECHO_WAT, HANG_GUARD_S, McpHome, make_home
from tests.e2e.serve_helpers import SLOW_WAT, audit_records, cli_json, make_key, serve
from tests.leakcheck import LeakCheck


@pytest.fixture
def home(isolated_home: Path) -> McpHome:
    return make_home(isolated_home)


_SESSIONS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_sessions() -> Any:
    yield
    while _SESSIONS:
        _SESSIONS.pop().close()


class Client:
    """The original's python-client.py, on httpx: a session with the key and JSON headers."""

    def __init__(self, base_url: str, api_key: str, **kw: Any) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = httpx.Client(
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            timeout=HANG_GUARD_S,
            **kw,
        )
        _SESSIONS.append(self.session)

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.base_url}/api/v1/health", timeout=HANG_GUARD_S)

    def list_credentials(self) -> httpx.Response:
        return self.session.get(f"{self.base_url}/api/v1/credentials")

    def execute(self, credential: str, method: str, url: str, **kw: Any) -> httpx.Response:
        payload = {
            "credential": credential,
            "method": method,
            "url": url,
            "headers": kw.get("headers") or {},
            "query": kw.get("query") or {},
        }
        if kw.get("body") is not None:
            payload["body"] = kw["body"]
        return self.session.post(f"{self.base_url}/api/v1/execute", json=payload)

    def action(self, credential: str | None, action: str, **params: Any) -> httpx.Response:
        body: dict[str, Any] = {"action": action, "params": params}
        if credential is not None:
            body["credential"] = credential
        return self.session.post(f"{self.base_url}/api/v1/execute", json=body)


def test_health_openapi_and_the_original_error_codes(home: McpHome, leakcheck: LeakCheck) -> None:
    key = make_key(home, "exec", "executor")
    leakcheck.add(key, *home.secrets)
    with serve(home) as s:
        c = Client(s.url, key)
        health = c.health()
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.json()["version"]
        assert health.headers["x-content-type-options"] == "nosniff"

        doc = httpx.get(f"{s.api}/openapi.json").json()
        assert doc["openapi"].startswith("3.1")
        for path in ("/health", "/credentials", "/credentials/{alias}", "/execute", "/audit",
                     "/plugins", "/approvals", "/approvals/{id}"):  # fmt: skip
            assert path in doc["paths"], path
        assert {"Error", "HttpExecute", "ActionExecute", "Credential"} <= set(
            doc["components"]["schemas"]
        )

        missing = httpx.get(f"{s.api}/credentials")
        assert missing.status_code == 401 and missing.json()["code"] == "missing_api_key"
        bogus = Client(s.url, "vk_" + "x" * 32).list_credentials()
        assert bogus.status_code == 401 and bogus.json()["code"] == "invalid_api_key"

        creds = c.list_credentials()
        assert creds.status_code == 200
        rows = {r["alias"]: r for r in creds.json()["credentials"]}
        assert set(rows) == {"echo-one", "github"}
        assert rows["github"]["credential_type"] == "api_key"
        assert ECHO_SECRET not in creds.text

        one = c.session.get(f"{s.api}/credentials/echo-one")
        assert one.status_code == 200 and one.json()["fields"]["token"] == "********"

        # the gate and the scrubbing are the pipeline's: the echoed secret comes back redacted
        echoed = c.action("echo-one", "echo", message="hi")
        assert echoed.status_code == 200, echoed.text
        result = echoed.json()["result"]
        assert result["params"] == {"message": "hi"}
        assert result["credential"]["fields"]["token"] != ECHO_SECRET
        # an HTTP request outside the credential's allowlist is refused before anything is sent
        outside = c.execute("github", "GET", "https://example.com/")
        assert outside.status_code == 403 and outside.json()["code"] == "access_denied"

        plugins = c.session.get(f"{s.api}/plugins").json()["plugins"]
        assert {"http", "echo"} <= {p["name"] for p in plugins}
        audit = c.session.get(f"{s.api}/audit")  # executor has no admin verb
        assert audit.status_code == 403 and audit.json()["code"] == "permission_denied"
        foreign = httpx.get(f"{s.api}/health", headers={"Host": "attacker.example"})
        assert foreign.status_code == 421 and foreign.json()["code"] == "invalid_host"
        cross = httpx.get(f"{s.api}/health", headers={"Origin": "https://attacker.example"})
        assert cross.status_code == 403 and cross.json()["code"] == "invalid_origin"
        errors = s.log()
    recs = [r for r in audit_records(home) if r.get("key") == "key:exec"]
    assert [r["outcome"] for r in recs] == ["ok", "denied"]
    assert all(r["source"] == "api" and r["client"] == "127.0.0.1" for r in recs)
    assert recs[0]["agent"] == "executor"
    leakcheck.scan(errors, "server stderr")


def test_roles_scope_keys_and_a_read_only_key_cannot_execute(home: McpHome) -> None:
    r = home.cli("role", "create", "gh-only", "-p", "read,execute", "-c", "github*")
    assert r.returncode == 0, r.stderr
    gh = make_key(home, "gh", "gh-only")
    ro = make_key(home, "ro", "read-only")
    with serve(home) as s:
        c = Client(s.url, gh)
        assert [x["alias"] for x in c.list_credentials().json()["credentials"]] == ["github"]
        other = c.session.get(f"{s.api}/credentials/echo-one")
        assert other.status_code == 403 and other.json()["code"] == "credential_denied"
        used = c.action("echo-one", "echo", message="hi")
        assert used.status_code == 403 and used.json()["code"] == "credential_denied"
        # decided by the globs alone: a name that does not exist answers the same
        ghost = c.action("no-such-thing", "echo", message="hi")
        assert ghost.json() == {
            "error": "Access denied to credential: no-such-thing",
            "code": "credential_denied",
            "type": "CredentialDeniedError",  # the same class for a name that does exist
        }
        assert used.json()["type"] == "CredentialDeniedError"

        reader = Client(s.url, ro)
        assert reader.list_credentials().status_code == 200
        denied = reader.action("echo-one", "echo", message="hi")
        assert denied.status_code == 403 and denied.json()["code"] == "permission_denied"
        assert "'execute' permission" in denied.json()["error"]


def test_an_expired_key_and_a_revoked_one_are_refused_at_once(home: McpHome) -> None:
    short = make_key(home, "short", "executor", "--expires", "1s")
    kept = make_key(home, "kept", "executor")
    with serve(home) as s:
        time.sleep(1.2)
        expired = Client(s.url, short).list_credentials()
        assert expired.status_code == 401 and expired.json()["code"] == "invalid_api_key"
        assert "expired at" in expired.json()["error"]

        c = Client(s.url, kept)
        assert c.list_credentials().status_code == 200
        r = home.cli("key", "revoke", "kept", "--yes")
        assert r.returncode == 0, r.stderr
        revoked = c.list_credentials()  # the very next request
        assert revoked.status_code == 401 and revoked.json()["code"] == "invalid_api_key"
    [row] = [k for k in cli_json(home, "key", "list") if k["name"] == "short"]  # type: ignore[union-attr]
    assert row["last_used_at"] is None  # refused requests are no use


def test_a_policy_rate_limit_holds_for_every_caller_with_retry_after(home: McpHome) -> None:
    (Path(home.root) / "config.toml").write_text(
        "[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n"
        '[[policies]]\nname = "echo-budget"\ncredential_pattern = "echo-*"\n'
        'default_action = "allow"\n'
        "rules = [{ condition = { rate_limit = { max = 2, window_secs = 600 } }, "
        'action = "allow" }]\n'
    )
    a = make_key(home, "a", "executor")
    b = make_key(home, "b", "admin")
    with serve(home) as s:
        assert Client(s.url, a).action("echo-one", "echo", message="1").status_code == 200
        assert Client(s.url, b).action("echo-one", "echo", message="2").status_code == 200
        over = Client(s.url, a).action("echo-one", "echo", message="3")
        assert over.status_code == 429 and over.json()["code"] == "rate_limited"
        assert 1 <= int(over.headers["retry-after"]) <= 600
        assert "for all callers together" in over.json()["error"]
        assert (
            Client(s.url, b).action("github", "request", url="https://example.com/").json()["code"]
            == "access_denied"
        )  # another credential is not in the policy's bucket
        # the key's last use reaches `key list` (written at shutdown at the latest)
    rows = {k["name"]: k for k in cli_json(home, "key", "list")}  # type: ignore[union-attr]
    assert rows["a"]["last_used_at"] and rows["b"]["last_used_at"]


def test_a_gated_call_waits_in_the_inbox_until_approvals_approve(home: McpHome) -> None:
    r = home.cli(
        "role", "create", "gated", "-p", "read,execute", "-c", "echo-*", "--approve", "echo"
    )
    assert r.returncode == 0, r.stderr
    key = make_key(home, "gated-key", "gated")
    result: dict[str, httpx.Response] = {}
    with serve(home) as s:

        def call() -> None:
            result["r"] = Client(s.url, key).action("echo-one", "echo", message="ship it")

        t = threading.Thread(target=call)
        t.start()
        deadline = time.monotonic() + HANG_GUARD_S
        waiting: list[Any] = []
        while not waiting and time.monotonic() < deadline:
            waiting = cli_json(home, "approvals", "list")  # type: ignore[assignment]
            time.sleep(0.1)
        [item] = waiting
        assert item["agent"] == "gated" and item["credential"] == "echo-one"
        assert "ship it" in item["summary"] and item["key"] == "gated-key"
        table = home.cli("approvals", "list")
        assert item["id"] in table.stdout and "echo:echo" in table.stdout

        # the key itself cannot approve (it has no admin verb anyway)
        own = Client(s.url, key).session.post(
            f"{s.api}/approvals/{item['id']}", json={"decision": "approve"}
        )
        assert own.status_code == 403
        r = home.cli("approvals", "approve", item["id"])
        assert r.returncode == 0, r.stderr
        t.join(HANG_GUARD_S)
        assert result["r"].status_code == 200, result["r"].text
        assert result["r"].json()["result"]["params"] == {"message": "ship it"}
        again = home.cli("approvals", "deny", item["id"])
        assert again.returncode == 11 and "no call waits" in again.stderr
    recs = audit_records(home)
    decision = next(x for x in recs if x["action"] == "approval.granted")
    assert decision["decided_by"] == "server-token" and decision["subject"] == item["id"]
    call_rec = next(x for x in recs if x.get("key") == "key:gated-key" and x["action"] == "echo")
    assert call_rec["approval"] == "granted" and call_rec["outcome"] == "ok"


def test_a_call_nobody_approves_expires_and_a_denied_one_is_refused(home: McpHome) -> None:
    with (Path(home.root) / "config.toml").open("a") as f:
        f.write("[server]\napproval_wait_s = 1\n")
    r = home.cli("role", "create", "gated", "-p", "execute", "-c", "echo-*", "--approve", "echo")
    assert r.returncode == 0, r.stderr
    key = make_key(home, "g", "gated")
    with serve(home) as s:
        late = Client(s.url, key).action("echo-one", "echo", message="x")
        assert late.status_code == 403 and late.json()["code"] == "approval_denied"
        assert "in time" in late.json()["error"]


def test_deny_and_prompt_policies_hold_for_the_cli_too(isolated_home: Path) -> None:
    home = make_home(
        isolated_home,
        config='[[policies]]\nname = "no-github"\ncredential_pattern = "github"\n'
        'default_action = "deny"\n'
        '[[policies]]\nname = "ask-echo"\ncredential_pattern = "echo-*"\n'
        'default_action = "prompt"\n',
    )
    denied = home.cli("request", "github", "https://api.github.com/user")
    assert denied.returncode == 8
    assert "denied by policy 'no-github'" in denied.stderr
    # no terminal to ask on: the prompt rule refuses, saying why
    unasked = home.cli("request", "echo-one", "--action", "echo", "--param", "message=hi")
    assert unasked.returncode == 8 and "no terminal to ask on" in unasked.stderr
    # on a terminal, the person there decides
    yes = _on_terminal(home, "y\n")
    assert yes[0] == 0 and "Approve this call?" in yes[1] and "hi" in yes[1]
    no = _on_terminal(home, "n\n")
    assert no[0] == 8 and "declined" in no[1]
    recs = [r for r in audit_records(home) if r.get("action") == "echo"]
    assert [r.get("approval") for r in recs] == ["unavailable", "granted", "declined"]


def _on_terminal(home: McpHome, answer: str) -> tuple[int, str]:
    import fcntl
    import select
    import termios

    master, slave = os.openpty()

    def controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vultrino",
            "request",
            "echo-one",
            "--action",
            "echo",
            "--param",
            "message=hi",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=home.env(),
        start_new_session=True,
        preexec_fn=controlling_tty,
    )
    os.close(slave)
    seen = ""
    answered = False
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                break
            seen += chunk.decode("utf-8", "replace")
        if not answered and "Approve this call?" in seen:
            os.write(master, answer.encode())
            answered = True
        if proc.poll() is not None and not ready:
            break
    code = proc.wait(timeout=HANG_GUARD_S)
    os.close(master)
    return code, seen


def test_sigterm_lets_a_call_in_flight_finish_and_closes_the_log(isolated_home: Path) -> None:
    home = make_home(
        isolated_home, plugins=(("echo", ECHO_WAT, "echo_message"), ("slow", SLOW_WAT, "slow_it"))
    )
    key = make_key(home, "k", "executor")
    result: dict[str, Any] = {}
    with serve(home) as s:

        def call() -> None:
            try:
                result["r"] = Client(s.url, key).action("slow-one", "echo", message="late")
            except httpx.HTTPError as exc:  # pragma: no cover - the failure being tested
                result["r"] = exc

        t = threading.Thread(target=call)
        t.start()
        time.sleep(0.5)  # the call is in the plugin now (it takes 1.5 s)
        s.proc.send_signal(signal.SIGTERM)
        t.join(HANG_GUARD_S)
        code = s.proc.wait(HANG_GUARD_S)
        log = s.log()
    response = result["r"]
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 200, response.text
    assert response.json()["result"]["params"] == {"message": "late"}
    assert code == 0, log
    assert not (Path(home.root) / "server.json").exists()
    verified = home.cli("audit", "verify", "--strict")  # the head was signed at close
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_public_bind_without_tls_is_refused_before_binding(home: McpHome) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: binding it would fail anyway,
    # so this passes only if the refusal comes first, as it must.
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", "serve", "--bind", "192.0.2.1:8443"],
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert r.returncode == 2
    assert "refusing to serve plain HTTP on 192.0.2.1" in r.stderr
    half = home.cli("serve", "--tls-cert", "cert.pem")
    assert half.returncode == 2 and "needs both a certificate and its private key" in half.stderr
    bad = home.cli("serve", "--bind", "nowhere")
    assert bad.returncode == 2 and "not HOST:PORT" in bad.stderr


def test_tls_with_a_self_signed_certificate(home: McpHome, tmp_path: Path) -> None:
    cert, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key_file),
            "-out",
            str(cert),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    api_key = make_key(home, "t", "admin")
    with serve(home, "--tls-cert", str(cert), "--tls-key", str(key_file)) as s:
        assert s.url.startswith("https://127.0.0.1:")
        c = Client(s.url, api_key, verify=ssl.create_default_context(cafile=str(cert)))
        r = c.list_credentials()
        assert r.status_code == 200, r.text + s.log()
        assert r.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{s.api}/health")  # an unknown certificate is not trusted
        # the approvals CLI finds the server and trusts its certificate through server.json
        assert cli_json(home, "approvals", "list") == []
        # an admin key reads the audit log with the CLI's filters
        audit = c.session.get(f"{s.api}/audit", params={"outcome": "ok", "limit": "5"})
        assert audit.status_code == 200 and isinstance(audit.json()["records"], list)
        bad = c.session.get(f"{s.api}/audit", params={"outcome": "maybe"})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"


def test_forwarded_headers_are_believed_only_from_a_trusted_proxy(home: McpHome) -> None:
    key = make_key(home, "p", "executor")
    fwd = {"X-Forwarded-For": "203.0.113.9"}
    with serve(home) as s:
        Client(s.url, key).session.post(
            f"{s.api}/execute",
            json={"credential": "echo-one", "action": "echo", "params": {"message": "a"}},
            headers=fwd,
        )
    with serve(home, "--trusted-proxy", "127.0.0.1") as s:
        Client(s.url, key).session.post(
            f"{s.api}/execute",
            json={"credential": "echo-one", "action": "echo", "params": {"message": "b"}},
            headers=fwd,
        )
    clients = [r["client"] for r in audit_records(home) if r.get("key") == "key:p"]
    assert clients == ["127.0.0.1", "203.0.113.9"]


def test_mcp_is_mounted_and_takes_api_keys(home: McpHome) -> None:
    key = make_key(home, "m", "executor")
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    with serve(home) as s:
        ok = httpx.post(
            f"{s.url}/mcp", json=init, headers={**accept, "Authorization": f"Bearer {key}"}
        )
        assert ok.status_code == 200, ok.text
        assert ok.headers.get("mcp-session-id")
        refused = httpx.post(f"{s.url}/mcp", json=init, headers=accept)
        assert refused.status_code == 401
        ui = httpx.get(f"{s.url}/")  # the web UI, behind its login
        assert ui.status_code == 303 and ui.headers["location"].startswith("/login")
    assert json.loads(json.dumps(ok.headers.get("content-type"))).startswith(
        ("application/json", "text/event-stream")
    )


def test_a_key_cannot_approve_its_own_call_made_over_mcp(home: McpHome) -> None:
    # The inbox must know which key a call held over /mcp came from, as for REST: an admin key
    # that could approve other calls cannot approve its own.
    r = home.cli(
        "role", "create", "gadm", "-p", "admin", "-c", "echo-*", "--tool", "*",
        "--approve", "echo_message",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    key = make_key(home, "kg", "gadm")
    headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {key}",
    }
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"},
        },
    }
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {
            "name": "echo_message",
            "arguments": {"credential": "echo-one", "message": "ship it"},
        },
    }
    result: dict[str, httpx.Response] = {}
    with serve(home) as s:
        opened = httpx.post(f"{s.url}/mcp", json=init, headers=headers)
        assert opened.status_code == 200, opened.text
        session = {**headers, "mcp-session-id": opened.headers["mcp-session-id"]}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        httpx.post(f"{s.url}/mcp", json=note, headers=session)

        def tool_call() -> None:
            result["r"] = httpx.post(f"{s.url}/mcp", json=call, headers=session, timeout=60)

        t = threading.Thread(target=tool_call)
        t.start()
        deadline = time.monotonic() + HANG_GUARD_S
        waiting: list[Any] = []
        while not waiting and time.monotonic() < deadline:
            waiting = cli_json(home, "approvals", "list")  # type: ignore[assignment]
            time.sleep(0.1)
        [item] = waiting
        assert item["key"] == "kg"  # the inbox knows whose call it holds
        own = Client(s.url, key).session.post(
            f"{s.api}/approvals/{item['id']}", json={"decision": "approve"}
        )
        assert own.status_code == 403, own.text
        assert "made with itself" in own.json()["error"]
        r = home.cli("approvals", "approve", item["id"])
        assert r.returncode == 0, r.stderr
        t.join(HANG_GUARD_S)
        assert result["r"].status_code == 200, result["r"].text
        assert "ship it" in result["r"].text
