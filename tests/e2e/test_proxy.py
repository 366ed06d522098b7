"""`vultrino serve --proxy`: the forward proxy, driven by unmodified tools (curl, httpx with the
proxy as its base URL) against a real upstream server on 127.0.0.1 that checks the injected
credential. The server is a real ``python -m vultrino serve`` process; nothing is mocked.

Large bodies (50 MiB, generated on the fly, both directions) check that the proxy streams: the
server process's peak RSS (``VmHWM``) may not grow by anything near the body's size.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.mcp_helpers import HANG_GUARD_S, PASSWORD, McpHome, make_home
from tests.e2e.serve_helpers import Server, audit_records, cli_json, make_key, serve
from tests.leakcheck import LeakCheck
from tests.localhttp import LocalServer, serving

SECRET = "sk-proxy-7f3a9c0e5b1d4e2f"
MIB = 1024 * 1024
BIG = 50 * MIB
_PATTERN = bytes(range(256)) * 256  # 64 KiB of filler that holds no secret


def _filler(n: int) -> Iterator[bytes]:
    left = n
    while left > 0:
        piece = _PATTERN[: min(left, len(_PATTERN))]
        left -= len(piece)
        yield piece


def _digest(n: int) -> str:
    h = hashlib.sha256()
    for piece in _filler(n):
        h.update(piece)
    return h.hexdigest()


class Upstream(LocalServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.seen: list[dict[str, object]] = []


class _Handler(BaseHTTPRequestHandler):
    """The API the credential is for: every request must carry ``Authorization: Bearer
    SECRET`` (else 401); it answers what it received (never the Authorization value)."""

    server: Upstream

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> Iterator[bytes]:
        length = self.headers.get("Content-Length")
        if length is not None:
            left = int(length)
            while left:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
            return
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return
                left = size
                while left:
                    chunk = self.rfile.read(min(left, 65536))
                    left -= len(chunk)
                    yield chunk
                self.rfile.readline()

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        h = hashlib.sha256()
        size = 0
        for chunk in self._body():
            h.update(chunk)
            size += len(chunk)
        authorized = self.headers.get("Authorization") == f"Bearer {SECRET}"
        with self.server.lock:
            self.server.seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "authorized": authorized,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                }
            )
        if not authorized:
            self._send(401, b'{"error": "bad credential"}')
            return
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/x/landed")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts.path == "/big":
            n = int(parse_qs(parts.query)["n"][0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()  # no length: the body runs until the connection closes
            for piece in _filler(n):
                self.wfile.write(piece)
            return
        if parts.path == "/leak":
            # The secret straddles the writes (and so, most likely, the reads at the proxy),
            # with 64 KiB of filler between copies.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            cut = len(SECRET) // 2
            for _ in range(4):
                self.wfile.write(b"x" * 65536 + SECRET[:cut].encode())
                self.wfile.flush()
                time.sleep(0.02)
                self.wfile.write(SECRET[cut:].encode())
            return
        if parts.path == "/broken":
            # promises 1 MiB, sends 100 KiB, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(MIB))
            self.end_headers()
            self.wfile.write(b"y" * 102400)
            self.wfile.flush()
            self.close_connection = True
            return
        if parts.path == "/gzip":
            payload = gzip.compress(f'{{"token": "{SECRET}", "ok": true}}'.encode())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        answer = {
            "method": self.command,
            "path": self.path,
            "size": size,
            "sha256": h.hexdigest(),
            "custom": self.headers.get("X-Custom"),
            "type": self.headers.get("Content-Type"),
        }
        self._send(201 if self.command == "POST" else 200, json.dumps(answer).encode())

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle


POLICY = """
[[policies]]
name = "ro-get-only"
credential_pattern = "ro"
default_action = "deny"
rules = [{ condition = { method_match = ["GET"] }, action = "allow" }]
"""


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with serving(Upstream()) as up:
        yield up


@pytest.fixture
def home(isolated_home: Path, upstream: Upstream) -> McpHome:
    from vultrino.core import Vultrino

    home = make_home(isolated_home, config=POLICY)
    with Vultrino.open(home.root, PASSWORD) as v:
        v.add_credential("up", "bearer", {"token": SECRET}, allow=[f"{upstream.base}/*"])
        v.add_credential("ro", "bearer", {"token": SECRET}, allow=[f"{upstream.base}/*"])
        # '*' admits any public host, never a loopback one: the address check refuses it
        v.add_credential("wild", "bearer", {"token": SECRET}, allow=["*"])
    home.secrets.append(SECRET)
    return home


def _proxy_url(s: Server) -> str:
    found = re.search(r"Vultrino proxy listening on (\S+)", s.log())
    assert found, s.log()
    return found.group(1)


def _curl(*args: str) -> tuple[int, dict[str, str], str]:
    r = subprocess.run(
        ["curl", "-sS", "-D", "-", *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=True,
    )
    out = r.stdout
    while out.startswith("HTTP/1.1 100"):  # the interim answer to Expect: 100-continue
        out = out.partition("\n\n")[2]
    head, _, body = out.partition("\n\n")  # text mode: CRLF read as LF
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _peak_rss(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    assert found
    return int(found.group(1)) * 1024


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


@needs_curl
def test_curl_and_httpx_use_a_credential_through_the_proxy(
    home: McpHome, upstream: Upstream, leakcheck: LeakCheck, tmp_path: Path
) -> None:
    key = make_key(home, "tool", "executor")
    leakcheck.add(key, *home.secrets)
    with serve(home, "--proxy-listen", "127.0.0.1:0") as s:
        proxy = _proxy_url(s)
        # curl, unmodified: the target URL as the path, the credential and key as headers
        status, headers, body = _curl(
            f"{proxy}/{upstream.base}/x/items?q=vultrino&page=2",
            "-H",
            "X-Vultrino-Credential: up",
            "-H",
            f"Proxy-Authorization: Bearer {key}",
            "-H",
            "X-Custom: kept",
        )
        assert status == 200, body
        answer = json.loads(body)
        assert answer["path"] == "/x/items?q=vultrino&page=2"
        assert answer["custom"] == "kept"
        assert headers["content-type"] == "application/json"
        seen = upstream.seen[-1]
        assert seen["authorized"] is True
        sent = seen["headers"]
        assert isinstance(sent, dict)
        # Vultrino's own headers and the key never reach the upstream
        assert not [h for h in sent if h.startswith("x-vultrino") or h == "proxy-authorization"]
        assert key not in json.dumps(sent)

        # curl with a body: POST passes method, body and content type through
        status, _, body = _curl(
            "-X",
            "POST",
            f"{proxy}/{upstream.base}/x/post",
            "-H",
            "X-Vultrino-Credential: up",
            "-H",
            f"X-Vultrino-Key: {key}",
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            "hello upstream",
        )
        assert status == 201, body
        answer = json.loads(body)
        assert answer["method"] == "POST" and answer["type"] == "text/plain"
        assert answer["sha256"] == hashlib.sha256(b"hello upstream").hexdigest()

        # an upload past the read-first size streams, with its Content-Length (and curl's
        # Expect: 100-continue answered by the proxy, not forwarded)
        upload = tmp_path / "upload.bin"
        upload.write_bytes(b"".join(_filler(5 * MIB)))
        status, _, body = _curl(
            "-X",
            "PUT",
            f"{proxy}/{upstream.base}/x/put",
            "-H",
            "X-Vultrino-Credential: up",
            "-H",
            f"X-Vultrino-Key: {key}",
            "--data-binary",
            f"@{upload}",
        )
        assert status == 200, body
        assert json.loads(body)["sha256"] == _digest(5 * MIB)
        sent = upstream.seen[-1]["headers"]
        assert isinstance(sent, dict)
        assert sent["content-length"] == str(5 * MIB) and "expect" not in sent

        # httpx with the proxy URL as its base URL, and the key where an SDK puts its api_key
        with httpx.Client(
            base_url=f"{proxy}/{upstream.base}",
            headers={"X-Vultrino-Credential": "up", "Authorization": f"Bearer {key}"},
            timeout=HANG_GUARD_S,
        ) as client:
            r = client.get("/x/sdk", params={"a": "1"})
            assert r.status_code == 200, r.text
            assert r.json()["path"] == "/x/sdk?a=1"
            assert upstream.seen[-1]["authorized"] is True
            # a redirect is followed by the plugin, the next hop checked like the first
            r = client.get("/redirect")
            assert r.status_code == 200 and r.json()["path"] == "/x/landed"
            # gzip is decoded, so the body can be scrubbed; the secret the server echoes is not
            # handed back
            r = client.get("/gzip")
            assert r.status_code == 200 and r.json() == {"token": "[REDACTED]", "ok": True}
            assert "content-encoding" not in r.headers
            # a secret split between two reads is still caught
            r = client.get("/leak")
            assert r.status_code == 200
            assert SECRET not in r.text and SECRET[:6] not in r.text.replace("[REDACTED]", "")
            assert r.text.count("[REDACTED]") == 4
            assert len(r.text) == 4 * (65536 + len("[REDACTED]"))
        leakcheck.scan(s.log(), "server log")

    records = [r for r in audit_records(home) if r.get("source") == "proxy"]
    assert len(records) == 7
    assert all(r["outcome"] == "ok" and r["key"] == "key:tool" for r in records)
    assert records[0]["url"] == f"{upstream.base}/x/items?q=vultrino&page=2"
    assert records[0]["method"] == "GET" and records[0]["alias"] == "up"
    assert records[-1]["bytes"] == 4 * (65536 + len("[REDACTED]"))


@needs_curl
def test_refusals_are_clear_and_audited(home: McpHome, upstream: Upstream) -> None:
    key = make_key(home, "tool", "executor")
    agent = home.cli(
        "agent", "add", "narrow", "--credential", "up", "--allow", f"GET {upstream.base}/x/*"
    )
    assert agent.returncode == 0, agent.stderr
    narrow_key = make_key(home, "narrow-key", "narrow")
    with serve(home, "--proxy-listen", "127.0.0.1:0") as s:
        proxy = _proxy_url(s)

        def get(path: str, credential: str = "up", k: str = key, **kw: str) -> httpx.Response:
            headers = {"X-Vultrino-Credential": credential, "Proxy-Authorization": f"Bearer {k}"}
            return httpx.request(
                kw.get("method", "GET"), f"{proxy}/{path}", headers=headers, timeout=HANG_GUARD_S
            )

        no_key = httpx.get(f"{proxy}/{upstream.base}/x", headers={"X-Vultrino-Credential": "up"})
        assert no_key.status_code == 407 and no_key.json()["code"] == "missing_api_key"
        assert no_key.headers["proxy-authenticate"].startswith("Bearer")
        bad_key = get(f"{upstream.base}/x", k="vk_" + "x" * 32)
        assert bad_key.status_code == 407 and bad_key.json()["code"] == "invalid_api_key"

        no_cred = httpx.get(
            f"{proxy}/{upstream.base}/x", headers={"Proxy-Authorization": f"Bearer {key}"}
        )
        assert no_cred.status_code == 400 and no_cred.json()["code"] == "missing_credential"
        assert "X-Vultrino-Credential" in no_cred.json()["error"]
        bad_timeout = httpx.get(
            f"{proxy}/{upstream.base}/x",
            headers={
                "X-Vultrino-Credential": "up",
                "Proxy-Authorization": f"Bearer {key}",
                "X-Vultrino-Timeout": "soon",
            },
        )
        assert (
            bad_timeout.status_code == 400 and "X-Vultrino-Timeout" in bad_timeout.json()["error"]
        )
        not_url = get("just/a/path")
        assert not_url.status_code == 400 and "not a target URL" in not_url.json()["error"]

        unknown = get(f"{upstream.base}/x", credential="nope")
        assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
        assert "nope" in unknown.json()["error"]

        outside = get("http://127.0.0.2:9/x")  # not in up's allowlist
        assert outside.status_code == 403 and outside.json()["code"] == "access_denied"
        assert "allowlist" in outside.json()["error"]

        ssrf = get(f"{upstream.base}/x", credential="wild")
        assert ssrf.status_code == 403 and ssrf.json()["code"] == "access_denied"
        assert "loopback" in ssrf.json()["error"] and "--allow" in ssrf.json()["error"]

        policy = get(f"{upstream.base}/x", credential="ro", method="POST")
        assert policy.status_code == 403 and policy.json()["code"] == "access_denied"
        assert "ro-get-only" in policy.json()["error"]
        assert get(f"{upstream.base}/x/ok", credential="ro").status_code == 200

        narrowed = get(f"{upstream.base}/other", k=narrow_key)
        assert narrowed.status_code == 403, narrowed.text
        assert narrowed.json()["code"] == "permission_denied"
        assert "narrow" in narrowed.json()["error"]
        assert get(f"{upstream.base}/x/fine", k=narrow_key).status_code == 200
        hidden = get(f"{upstream.base}/x/fine", credential="ro", k=narrow_key)
        # outside its profile: refused by its globs, as the REST API refuses it
        assert hidden.status_code == 403 and hidden.json()["code"] == "credential_denied"

        refused_header = httpx.get(
            f"{proxy}/{upstream.base}/x",
            headers={
                "X-Vultrino-Credential": "up",
                "Proxy-Authorization": f"Bearer {key}",
                "Range": "bytes=0-3",
            },
        )
        assert refused_header.status_code == 400
        assert "'range' is refused" in refused_header.json()["error"]
        assert refused_header.json()["code"] == "execute_error"  # a ParameterError's code
    # nothing refused reached the upstream
    assert all(seen["authorized"] for seen in upstream.seen)
    paths = [str(seen["path"]) for seen in upstream.seen]
    assert paths == ["/x/ok", "/x/fine"]

    records = {
        (r["alias"], r["outcome"], r.get("error"))
        for r in audit_records(home)
        if r.get("source") == "proxy"
    }
    assert ("nope", "error", "CredentialNotFoundError") in records
    assert ("up", "denied", "AccessDeniedError") in records  # the allowlist
    assert ("wild", "denied", "AccessDeniedError") in records  # the address check
    assert ("ro", "denied", "AccessDeniedError") in records  # the policy
    assert ("up", "denied", "AgentPolicyError") in records  # the agent's URL patterns
    assert ("ro", "denied", "CredentialOutsideProfile") in records


def test_fifty_mib_streams_both_ways_in_bounded_memory(home: McpHome, upstream: Upstream) -> None:
    key = make_key(home, "bulk", "executor")
    with serve(home, "--proxy-listen", "127.0.0.1:0") as s:
        proxy = _proxy_url(s)
        headers = {
            "X-Vultrino-Credential": "up",
            "Proxy-Authorization": f"Bearer {key}",
            "X-Vultrino-Timeout": "300",
        }
        with httpx.Client(base_url=f"{proxy}/{upstream.base}", headers=headers, timeout=300) as c:
            # warm up both paths (threads, pools, buffers) before the peak is read
            assert c.get("/big", params={"n": str(MIB)}).status_code == 200
            warm = c.post("/x/up", content=_filler(MIB))
            assert warm.status_code == 201 and warm.json()["size"] == MIB
            before = _peak_rss(s.proc.pid)

            h = hashlib.sha256()
            size = 0
            with c.stream("GET", "/big", params={"n": str(BIG)}) as r:
                assert r.status_code == 200
                for chunk in r.iter_raw():
                    h.update(chunk)
                    size += len(chunk)
            assert size == BIG and h.hexdigest() == _digest(BIG)

            up = c.post("/x/upload", content=_filler(BIG))  # chunked: no length declared
            assert up.status_code == 201, up.text
            assert up.json()["size"] == BIG and up.json()["sha256"] == _digest(BIG)
            after = _peak_rss(s.proc.pid)
    # Holding either body would add at least its 50 MiB; streaming adds buffers only.
    assert after - before < 24 * MIB, (before, after)
    records = [r for r in audit_records(home) if r.get("source") == "proxy"]
    assert [r["outcome"] for r in records] == ["ok"] * 4
    assert records[2]["bytes"] == BIG


def test_gated_calls_wait_in_the_approvals_inbox(home: McpHome, upstream: Upstream) -> None:
    agent = home.cli("agent", "add", "gated", "--credential", "up", "--approve", "http_request")
    assert agent.returncode == 0, agent.stderr
    key = make_key(home, "gated-key", "gated")
    with serve(home, "--proxy-listen", "127.0.0.1:0") as s:
        proxy = _proxy_url(s)
        headers = {"X-Vultrino-Credential": "up", "X-Vultrino-Key": key}
        # a body too large to read first cannot be shown to a person: refused, nothing sent
        big = httpx.post(
            f"{proxy}/{upstream.base}/x/big",
            headers=headers,
            content=_filler(MIB),
            timeout=HANG_GUARD_S,
        )
        assert big.status_code == 403 and big.json()["code"] == "approval_denied"
        assert "streamed" in big.json()["error"]
        assert upstream.seen == []

        result: dict[str, httpx.Response] = {}

        def call() -> None:
            result["r"] = httpx.post(
                f"{proxy}/{upstream.base}/x/small",
                headers=headers,
                content=b"ship it",
                timeout=HANG_GUARD_S,
            )

        t = threading.Thread(target=call)
        t.start()
        deadline = time.monotonic() + HANG_GUARD_S
        waiting: list[Any] = []
        while not waiting and time.monotonic() < deadline:
            waiting = cli_json(home, "approvals", "list")  # type: ignore[assignment]
            time.sleep(0.1)
        [item] = waiting
        # the person sees the exact request: method, URL and the body
        assert f"POST {upstream.base}/x/small" in item["summary"]
        assert "ship it" in item["summary"]
        r = home.cli("approvals", "approve", item["id"])
        assert r.returncode == 0, r.stderr
        t.join(HANG_GUARD_S)
        assert result["r"].status_code == 201, result["r"].text
        assert result["r"].json()["sha256"] == hashlib.sha256(b"ship it").hexdigest()
    records = [r for r in audit_records(home) if r.get("source") == "proxy"]
    assert [(r["outcome"], r.get("approval")) for r in records] == [
        ("denied", "unavailable"),
        ("ok", "granted"),
    ]


def test_the_proxy_off_loopback_needs_tls_and_is_no_mcp_flag(home: McpHome) -> None:
    r = home.cli("serve", "--proxy-listen", "0.0.0.0:0")
    assert r.returncode == 2
    assert "forward proxy" in r.stderr and "--tls-cert" in r.stderr
    r = home.cli("serve", "--mcp", "--proxy")
    assert r.returncode == 2 and "--proxy" in r.stderr
    r = home.cli("serve", "--proxy-listen", "nonsense")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr


def test_an_answer_that_breaks_off_is_cut_off_and_audited_as_such(
    home: McpHome, upstream: Upstream
) -> None:
    key = make_key(home, "tool", "executor")
    with serve(home, "--proxy-listen", "127.0.0.1:0") as s:
        proxy = _proxy_url(s)
        headers = {"X-Vultrino-Credential": "up", "Proxy-Authorization": f"Bearer {key}"}
        got = 0
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream(
                "GET", f"{proxy}/{upstream.base}/broken", headers=headers, timeout=HANG_GUARD_S
            ) as r,
        ):
            assert r.status_code == 200  # the head was on its way before the body broke
            for chunk in r.iter_raw():
                got += len(chunk)
        # the client sees an incomplete answer, never a short one that looks whole
        assert got < MIB
        # the proxy goes on serving
        ok = httpx.get(f"{proxy}/{upstream.base}/x/after", headers=headers, timeout=HANG_GUARD_S)
        assert ok.status_code == 200
        log = s.log()
        assert "the answer broke off" in log and "Traceback" not in log
    assert s.proc.returncode == 0  # SIGTERM stopped both listeners cleanly
    records = [r for r in audit_records(home) if r.get("source") == "proxy"]
    assert [(r["outcome"], r.get("error")) for r in records] == [
        ("error", "ActionFailedError"),
        ("ok", None),
    ]
    assert 0 < records[0]["bytes"] < MIB
