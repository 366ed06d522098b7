"""The built-in HTTP plugin against real HTTP servers on 127.0.0.1.

Each server records every request it receives, so a refusal is proven by the server having
seen nothing, and a credential that must not travel is proven absent from what it saw.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest

from vultrino.errors import (
    AccessDeniedError,
    ActionFailedError,
    ActionNotFoundError,
    CredentialMismatchError,
    CredentialValidationError,
    ParameterError,
)
from vultrino.plugins.base import ActionResult, CredentialView
from vultrino.plugins.http import HttpPlugin

CLIENT_ID = "client-7"
CLIENT_SECRET = "csecret-9f8e7d"


class Recorder(ThreadingHTTPServer):
    """A threaded test server that records requests and plays several roles by path."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.token_ttl = 3600
        self.token_count = 0
        self.valid_tokens: set[str] = set()
        self.refresh_tokens: set[str] = {"rt-initial-0"}
        self.token_forms: list[dict[str, str]] = []
        self.client_auth_seen: list[str] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def seen(self, path_prefix: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(path_prefix)]

    def issue_token(self, rotate: bool) -> dict[str, Any]:
        with self.lock:
            self.token_count += 1
            token = f"tok-{self.token_count}-a1b2c3"
            self.valid_tokens.add(token)
            out: dict[str, Any] = {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.token_ttl,
            }
            if rotate:
                rt = f"rt-rotated-{self.token_count}"
                self.refresh_tokens.add(rt)
                out["refresh_token"] = rt
            return out


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.handle_any()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def do_HEAD(self) -> None:
        self.handle_any()

    def send(self, status: int, body: bytes, ctype: str = "application/json", **extra: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, data: Any, **extra: str) -> None:
        self.send(status, json.dumps(data).encode(), **extra)

    def handle_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        record = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        with self.server.lock:
            self.server.requests.append(record)
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        route = parts.path
        if route == "/redirect":
            target = query["to"]
            if "leak" in query:
                target += f"?stolen={query.get(query['leak'], '')}"
            self.send(int(query.get("code", "302")), b"", Location=target)
        elif route == "/loop":
            self.send(302, b"", Location="/loop")
        elif route == "/big":
            self.send(200, b"x" * int(query["n"]), "text/plain")
        elif route == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                while not self.server.stop.is_set():
                    self.wfile.write(b"y" * 65536)
            except OSError:
                pass
        elif route == "/sleep":
            self.server.stop.wait(float(query["s"]))
            self.send(200, b"late", "text/plain")
        elif route == "/gzip":
            data = gzip.compress(b"z" * int(query["n"]))
            self.send(200, data, "text/plain", Content_Encoding="gzip")
        elif route == "/binary":
            self.send(200, bytes(range(256)), "application/octet-stream")
        elif route == "/utf16":
            self.send(200, "h\u00e9llo".encode("utf-16"), "text/plain; charset=utf-16")
        elif route == "/raw":
            self.send(200, body, query.get("ct", "text/plain"))
        elif route == "/header-echo":
            self.send(200, b"{}", X_Echo=self.headers.get(query["h"], ""))
        elif route == "/setcookie":
            self.send(200, b"{}", Set_Cookie="session=s3cr3t-cookie; Path=/")
        elif route == "/token":
            self.token_endpoint(body)
        elif route.startswith("/api/"):
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ")
            if not auth.startswith("Bearer ") or token not in self.server.valid_tokens:
                self.send_json(401, {"error": "invalid_token"}, WWW_Authenticate="Bearer")
                return
            self.echo(record, query)
        else:
            self.echo(record, query)

    def echo(self, record: dict[str, Any], query: dict[str, str]) -> None:
        self.send_json(
            200,
            {
                "method": record["method"],
                "path": record["path"],
                "query": query,
                "headers": record["headers"],
                "body": record["body"].decode("utf-8", "replace"),
            },
        )

    def token_endpoint(self, body: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        self.server.token_forms.append(form)
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            cid, secret = unquote_plus(cid), unquote_plus(secret)
            self.server.client_auth_seen.append("basic")
        else:
            cid, secret = form.get("client_id", ""), form.get("client_secret", "")
            self.server.client_auth_seen.append("body")
        if cid != CLIENT_ID or secret != CLIENT_SECRET:
            self.send_json(
                401,
                {"error": "invalid_client", "error_description": f"bad secret {secret}"},
            )
            return
        grant = form.get("grant_type")
        if grant == "client_credentials":
            self.send_json(200, self.server.issue_token(rotate=False))
        elif grant == "refresh_token":
            rt = form.get("refresh_token", "")
            with self.server.lock:
                ok = rt in self.server.refresh_tokens
                self.server.refresh_tokens.discard(rt)
            if not ok:
                self.send_json(400, {"error": "invalid_grant"})
                return
            self.send_json(200, self.server.issue_token(rotate=True))
        else:
            self.send_json(400, {"error": "unsupported_grant_type"})


def _serve() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def server() -> Iterator[Recorder]:
    yield from _serve()


@pytest.fixture
def other() -> Iterator[Recorder]:
    yield from _serve()


@pytest.fixture
def plugin() -> Iterator[HttpPlugin]:
    p = HttpPlugin()
    p._http()  # build the connection pool now, outside any test's timeout budget
    yield p
    p.close()


def cred(
    type_: str,
    fields: dict[str, Any],
    allow: list[str] | tuple[str, ...],
    state: dict[str, Any] | None = None,
) -> CredentialView:
    return CredentialView(
        alias="test-cred", type=type_, fields=fields, allow=tuple(allow), state=state or {}
    )


def run(plugin: HttpPlugin, credential: CredentialView, url: str, **params: Any) -> ActionResult:
    return plugin.execute("request", {"url": url, **params}, credential)


def echoed(result: ActionResult) -> dict[str, Any]:
    assert result.value["status"] == 200, result.value
    data: dict[str, Any] = json.loads(result.value["body"])
    return data


def nothing_leaked(result: ActionResult, *secrets: str) -> None:
    text = json.dumps(result.value)
    for secret in secrets:
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode() not in text


# --- injection per credential type -----------------------------------------------------------


def test_api_key_goes_in_authorization_bearer_by_default(
    plugin: HttpPlugin, server: Recorder
) -> None:
    c = cred("api_key", {"key": "k-123456"}, [f"{server.base}/*"])
    result = run(plugin, c, f"{server.base}/echo")
    assert server.seen()[0]["headers"]["authorization"] == "Bearer k-123456"
    assert echoed(result)["headers"]["authorization"] == "Bearer [REDACTED]"
    nothing_leaked(result, "k-123456")
    assert result.new_state is None
    assert result.value["url"] == f"{server.base}/echo"
    assert result.value["body_encoding"] == "text"
    assert isinstance(result.value["elapsed_ms"], float)


def test_api_key_custom_header_has_no_prefix_unless_given(
    plugin: HttpPlugin, server: Recorder
) -> None:
    c = cred("api_key", {"key": "k-abcdef", "header": "X-API-Key"}, [f"{server.base}/*"])
    run(plugin, c, f"{server.base}/echo")
    c2 = cred(
        "api_key",
        {"key": "k-abcdef", "header": "Authorization", "prefix": "Token "},
        [f"{server.base}/*"],
    )
    run(plugin, c2, f"{server.base}/echo")
    first, second = server.seen()
    assert first["headers"]["x-api-key"] == "k-abcdef"
    assert "authorization" not in first["headers"]
    assert second["headers"]["authorization"] == "Token k-abcdef"


def test_api_key_in_query_param_replaces_any_agent_value(
    plugin: HttpPlugin, server: Recorder
) -> None:
    c = cred("api_key", {"key": "qk/9+&=x", "query_param": "api_key"}, [f"{server.base}/*"])
    result = run(plugin, c, f"{server.base}/echo?a=1&api_key=evil", query={"b": ["2", "3"]})
    seen = server.seen()[0]
    assert "authorization" not in seen["headers"]
    assert parse_qs(urlsplit(seen["path"]).query) == {
        "a": ["1"],
        "b": ["2", "3"],
        "api_key": ["qk/9+&=x"],
    }
    assert "api_key=[REDACTED]" in result.value["url"]
    assert echoed(result)["query"]["api_key"] == "[REDACTED]"
    nothing_leaked(result, "qk/9+&=x", "qk%2F9%2B%26%3Dx")


def test_bearer_token(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "bt-555555"}, [f"{server.base}/*"])
    result = run(plugin, c, f"{server.base}/echo")
    assert server.seen()[0]["headers"]["authorization"] == "Bearer bt-555555"
    nothing_leaked(result, "bt-555555")


def test_basic_auth_and_its_base64_is_scrubbed(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("basic_auth", {"username": "alice", "password": "pw-hunter2"}, [f"{server.base}/*"])
    result = run(plugin, c, f"{server.base}/echo")
    encoded = base64.b64encode(b"alice:pw-hunter2").decode()
    assert server.seen()[0]["headers"]["authorization"] == f"Basic {encoded}"
    assert echoed(result)["headers"]["authorization"] == "Basic [REDACTED]"
    nothing_leaked(result, "pw-hunter2", "alice:pw-hunter2")


@pytest.mark.parametrize(
    ("type_", "fields"),
    [
        ("api_key", {"key": "k-111111"}),
        ("bearer", {"token": "t-222222"}),
        ("basic_auth", {"username": "u", "password": "p-333333"}),
    ],
)
def test_extra_headers_for_every_type(
    plugin: HttpPlugin, server: Recorder, type_: str, fields: dict[str, Any]
) -> None:
    extra = "X-Org: org-42\n\n# a comment\nX-Team:  blue  \nAuthorization: hijack"
    c = cred(type_, {**fields, "extra_headers": extra}, [f"{server.base}/*"])
    result = run(plugin, c, f"{server.base}/echo")
    headers = server.seen()[0]["headers"]
    assert headers["x-org"] == "org-42"
    assert headers["x-team"] == "blue"
    assert headers["authorization"] != "hijack"  # the credential's own header wins
    echoed_headers = echoed(result)["headers"]
    assert echoed_headers["x-org"] == "[REDACTED]"  # extra header values are secret


def test_agent_headers_pass_but_cannot_override_the_credential(
    plugin: HttpPlugin, server: Recorder
) -> None:
    c = cred("bearer", {"token": "t-owntoken"}, [f"{server.base}/*"])
    run(plugin, c, f"{server.base}/echo", headers={"Authorization": "Bearer mine", "X-A": "1"})
    headers = server.seen()[0]["headers"]
    assert headers["authorization"] == "Bearer t-owntoken"
    assert headers["x-a"] == "1"


@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "Bad Name"])
def test_agent_cannot_set_host_or_framing_headers(
    plugin: HttpPlugin, server: Recorder, name: str
) -> None:
    c = cred("bearer", {"token": "t-owntoken"}, [f"{server.base}/*"])
    with pytest.raises(ParameterError):
        run(plugin, c, f"{server.base}/echo", headers={name: "evil.example"})
    assert server.seen() == []


def test_bodies_text_json_and_base64(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-bodies"}, [f"{server.base}/*"])
    run(plugin, c, f"{server.base}/echo", method="POST", body="h\u00e9llo")
    run(plugin, c, f"{server.base}/echo", method="put", body_json={"a": [1, 2]})
    run(plugin, c, f"{server.base}/echo", method="PATCH", body_base64="AAEC/w==")
    text, js, raw = server.seen()
    assert (text["method"], text["body"]) == ("POST", "h\u00e9llo".encode())
    assert js["method"] == "PUT"
    assert json.loads(js["body"]) == {"a": [1, 2]}
    assert js["headers"]["content-type"] == "application/json"
    assert raw["body"] == b"\x00\x01\x02\xff"
    with pytest.raises(ParameterError, match="at most one"):
        run(plugin, c, f"{server.base}/echo", body="a", body_json={})
    with pytest.raises(ParameterError, match="base64"):
        run(plugin, c, f"{server.base}/echo", body_base64="not base64!")
    with pytest.raises(ParameterError, match="method"):
        run(plugin, c, f"{server.base}/echo", method="TRACE")
    assert len(server.seen()) == 3


def test_head_request_has_empty_body(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-head00"}, [f"{server.base}/*"])
    result = run(plugin, c, f"{server.base}/echo", method="HEAD")
    assert result.value["status"] == 200
    assert result.value["body"] == ""
    assert server.seen()[0]["method"] == "HEAD"


# --- the allowlist ---------------------------------------------------------------------------


def test_empty_allowlist_is_refused_before_any_io(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-nolist"}, [])
    with pytest.raises(AccessDeniedError, match="--allow PATTERN"):
        run(plugin, c, f"{server.base}/echo")
    assert server.seen() == []


REFUSED = {
    "other host name": "http://localhost:{port}/api/x",
    "other port": "http://127.0.0.1:{other}/api/x",
    "other path": "http://127.0.0.1:{port}/echo",
    "prefix lookalike": "http://127.0.0.1:{port}/api-admin",
    "dot dot": "http://127.0.0.1:{port}/api/../echo",
    "encoded dot dot": "http://127.0.0.1:{port}/api/%2e%2E/echo",
    "mixed dot dot": "http://127.0.0.1:{port}/api/.%2e/echo",
    "encoded slash": "http://127.0.0.1:{port}/api/..%2Fecho",
    "encoded backslash": "http://127.0.0.1:{port}/api/..%5cecho",
    "double encoding": "http://127.0.0.1:{port}/api/%252e%252e/echo",
    "double encoded slash": "http://127.0.0.1:{port}/api/x%252F..%252F..%252Fecho",
    "path parameter": "http://127.0.0.1:{port}/api/..;/echo",
    "dots and spaces": "http://127.0.0.1:{port}/api/..%20/echo",
    "scheme change": "https://127.0.0.1:{port}/api/x",
    "userinfo trick": "http://127.0.0.1:{port}@127.0.0.1:{other}/api/x",
    "userinfo with password": "http://user:pw@127.0.0.1:{port}/api/x",
    "fragment trick": "http://127.0.0.1:{other}#@127.0.0.1:{port}/api/x",
    "query trick": "http://127.0.0.1:{other}?@127.0.0.1:{port}/api/x",
    "decimal ip": "http://2130706433:{port}/api/x",
    "short ip": "http://127.1:{port}/api/x",
    "octal ip": "http://0177.0.0.1:{port}/api/x",
    "backslash": "http://127.0.0.1:{other}\\@127.0.0.1:{port}/api/x",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_urls_outside_the_allowlist_never_reach_any_server(
    plugin: HttpPlugin, server: Recorder, other: Recorder, case: str
) -> None:
    c = cred("bearer", {"token": "t-guarded"}, [f"http://127.0.0.1:{server.port}/api/*"])
    url = REFUSED[case].format(port=server.port, other=other.port)
    with pytest.raises((AccessDeniedError, ParameterError)) as info:
        run(plugin, c, url)
    assert server.seen() == []
    assert other.seen() == []
    assert "t-guarded" not in str(info.value)
    if isinstance(info.value, AccessDeniedError) and "userinfo" not in str(info.value):
        assert f"http://127.0.0.1:{server.port}/api/*" in str(info.value)  # names the list


def test_inside_the_prefix_encoded_slash_is_allowed(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-guarded"}, [f"http://127.0.0.1:{server.port}/api/*"])
    result = run(plugin, c, f"{server.base}/api/group%2Fproject")
    assert result.value["status"] == 401  # reached the server: the path stayed in /api/
    assert server.seen()[0]["path"] == "/api/group%2Fproject"


def test_normalised_url_is_what_is_sent(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-normal"}, [f"http://127.0.0.1:{server.port}/echo/*"])
    result = run(plugin, c, f"HTTP://127.0.0.1:{server.port}/echo/a/./b/../%7Ec#frag")
    assert server.seen()[0]["path"] == "/echo/a/~c"
    assert result.value["url"] == f"{server.base}/echo/a/~c"


def test_uppercase_host_in_url_and_pattern_matches(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-upper"}, [f"HTTP://LOCALHOST:{server.port}/echo"])
    result = run(plugin, c, f"http://LocalHost:{server.port}/echo")
    assert result.value["status"] == 200
    assert len(server.seen()) == 1


def test_star_admits_any_url_but_reaches_loopback_only_by_exact_name(
    plugin: HttpPlugin, server: Recorder, other: Recorder
) -> None:
    # '*' admits every URL, but a loopback host is reached only when a pattern names it
    # exactly (with its port): the SSRF guard, docs/http.md "Private addresses".
    c = cred("bearer", {"token": "t-anywhere"}, ["*"])
    with pytest.raises(AccessDeniedError, match=r"127\.0\.0\.0/8 \(loopback\)"):
        run(plugin, c, f"{server.base}/x")
    with pytest.raises(AccessDeniedError, match="localhost resolves to"):
        run(plugin, c, f"http://localhost:{other.port}/y")
    c = cred("bearer", {"token": "t-anywhere"}, ["*", f"{server.base}/*"])
    assert run(plugin, c, f"{server.base}/x").value["status"] == 200
    with pytest.raises(AccessDeniedError, match="name it exactly"):
        run(plugin, c, f"{other.base}/y")
    assert len(server.seen()) == 1
    assert other.seen() == []


def test_method_restricted_pattern(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-methods"}, [f"GET,HEAD {server.base}/*"])
    assert run(plugin, c, f"{server.base}/echo").value["status"] == 200
    with pytest.raises(AccessDeniedError, match="POST"):
        run(plugin, c, f"{server.base}/echo", method="POST", body="x")
    assert [r["method"] for r in server.seen()] == ["GET"]


# --- redirects -------------------------------------------------------------------------------


def test_same_origin_redirect_keeps_the_credential(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("api_key", {"key": "k-redirect", "query_param": "key"}, [f"{server.base}/*"])
    result = run(plugin, c, f"{server.base}/redirect?to=/echo/final&code=307")
    first, second = server.seen()
    assert second["path"] == "/echo/final?key=k-redirect"
    assert result.value["url"] == f"{server.base}/echo/final?key=[REDACTED]"
    assert first["path"].startswith("/redirect")


def test_cross_origin_redirect_within_allowlist_drops_the_credential(
    plugin: HttpPlugin, server: Recorder, other: Recorder
) -> None:
    c = cred(
        "api_key",
        {"key": "k-crossorigin", "extra_headers": "X-Extra: e-secret-1"},
        [f"{server.base}/*", f"{other.base}/*"],
    )
    result = run(
        plugin,
        c,
        f"{server.base}/redirect?to={other.base}/echo",
        headers={"Cookie": "mine=1", "X-Agent": "ok"},
    )
    assert echoed(result)["path"] == "/echo"
    (hop,) = other.seen()
    assert "authorization" not in hop["headers"]
    assert "x-extra" not in hop["headers"]
    assert "cookie" not in hop["headers"]
    assert hop["headers"]["x-agent"] == "ok"
    assert "k-crossorigin" not in json.dumps(hop, default=str)
    assert server.seen()[0]["headers"]["authorization"] == "Bearer k-crossorigin"


def test_cross_origin_redirect_outside_allowlist_is_refused(
    plugin: HttpPlugin, server: Recorder, other: Recorder
) -> None:
    c = cred("bearer", {"token": "t-stay-home"}, [f"{server.base}/*"])
    with pytest.raises(AccessDeniedError, match="redirect to"):
        run(plugin, c, f"{server.base}/redirect?to={other.base}/echo")
    assert other.seen() == []
    assert len(server.seen()) == 1


def test_redirect_back_to_origin_after_leaving_stays_without_credential(
    plugin: HttpPlugin, server: Recorder, other: Recorder
) -> None:
    c = cred("bearer", {"token": "t-no-return"}, [f"{server.base}/*", f"{other.base}/*"])
    back = f"{server.base}/echo/back"
    run(plugin, c, f"{server.base}/redirect?to={other.base}/redirect?to={back}")
    first, last = server.seen()
    assert first["headers"]["authorization"] == "Bearer t-no-return"
    assert last["path"] == "/echo/back"
    assert "authorization" not in last["headers"]


def test_cross_origin_redirect_carrying_the_secret_is_refused(
    plugin: HttpPlugin, server: Recorder, other: Recorder
) -> None:
    c = cred("api_key", {"key": "k-leaky-9", "query_param": "key"}, [server.base, other.base])
    with pytest.raises(AccessDeniedError, match="secret"):
        run(plugin, c, f"{server.base}/redirect?to={other.base}/echo&leak=key")
    assert other.seen() == []


def test_bad_redirect_location_is_refused_without_echoing_the_secret(
    plugin: HttpPlugin, server: Recorder, other: Recorder
) -> None:
    c = cred("api_key", {"key": "k-leaky-bad", "query_param": "key"}, [server.base, other.base])
    bad = f"{other.base}/%zz"
    with pytest.raises(AccessDeniedError, match="unusable URL") as info:
        run(plugin, c, f"{server.base}/redirect", query={"to": bad, "leak": "key"})
    assert "k-leaky-bad" not in str(info.value)
    assert other.seen() == []


def test_too_many_redirects(server: Recorder) -> None:
    p = HttpPlugin(max_redirects=3)
    try:
        c = cred("bearer", {"token": "t-loop00"}, [f"{server.base}/*"])
        with pytest.raises(ActionFailedError, match="more than 3"):
            run(p, c, f"{server.base}/loop")
    finally:
        p.close()
    assert len(server.seen()) == 4


@pytest.mark.parametrize(
    ("code", "method", "keeps"),
    [
        (301, "POST", False),
        (302, "POST", False),
        (303, "POST", False),
        (303, "PUT", False),
        (307, "POST", True),
        (308, "PUT", True),
        (302, "PUT", True),
    ],
)
def test_redirect_method_rules(
    plugin: HttpPlugin, server: Recorder, code: int, method: str, keeps: bool
) -> None:
    c = cred("bearer", {"token": "t-see-other"}, [f"{server.base}/*"])
    result = run(
        plugin, c, f"{server.base}/redirect?to=/echo&code={code}", method=method, body_json={"a": 1}
    )
    data = echoed(result)
    if keeps:
        assert (data["method"], json.loads(data["body"])) == (method, {"a": 1})
        assert server.seen()[1]["headers"]["content-type"] == "application/json"
    else:
        assert (data["method"], data["body"]) == ("GET", "")
        assert "content-type" not in server.seen()[1]["headers"]


def test_redirect_refused_by_method_restriction(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred(
        "bearer",
        {"token": "t-meth-redir"},
        [f"POST {server.base}/redirect", f"POST {server.base}/echo"],
    )
    with pytest.raises(AccessDeniedError, match="GET"):
        run(plugin, c, f"{server.base}/redirect?to=/echo&code=303", method="POST", body="x")
    assert len(server.seen()) == 1


# --- responses -------------------------------------------------------------------------------


def test_scrubs_plain_base64_and_urlsafe_forms(plugin: HttpPlugin, server: Recorder) -> None:
    secret = "s3cr3t?>>~~value"
    c = cred("bearer", {"token": secret}, [f"{server.base}/*"])
    forms = [
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
        json.dumps(secret),
    ]
    body = " | ".join(forms)
    result = run(plugin, c, f"{server.base}/raw", method="POST", body=body)
    assert result.value["body"].count("[REDACTED]") == len(forms)
    for form in forms:
        assert form not in result.value["body"]
    echo = run(plugin, c, f"{server.base}/header-echo?h=Authorization")
    assert echo.value["headers"]["x-echo"] == "Bearer [REDACTED]"


def test_scrubs_secrets_inside_binary_bodies(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-binary-sec"}, [f"{server.base}/*"])
    payload = b"\xff\xfe" + b"t-binary-sec" + b"\x00\x80"
    result = run(
        plugin,
        c,
        f"{server.base}/raw?ct=application/octet-stream",
        method="POST",
        body_base64=base64.b64encode(payload).decode(),
    )
    assert result.value["body_encoding"] == "base64"
    assert base64.b64decode(result.value["body"]) == b"\xff\xfe[REDACTED]\x00\x80"


def test_binary_body_comes_back_as_base64(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-binary"}, [f"{server.base}/*"])
    result = run(plugin, c, f"{server.base}/binary")
    assert result.value["body_encoding"] == "base64"
    assert base64.b64decode(result.value["body"]) == bytes(range(256))
    assert result.value["headers"]["content-type"] == "application/octet-stream"


def test_declared_charset_is_used(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-charset"}, [f"{server.base}/*"])
    result = run(plugin, c, f"{server.base}/utf16")
    assert (result.value["body"], result.value["body_encoding"]) == ("h\u00e9llo", "text")


def test_timeout_is_a_clear_error(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-slow00"}, [f"{server.base}/*"])
    with pytest.raises(ActionFailedError, match="timed out") as info:
        run(plugin, c, f"{server.base}/sleep?s=60", timeout=0.3)
    assert "timeout parameter" in str(info.value)
    assert "t-slow00" not in str(info.value)


def test_oversized_bodies_are_refused(server: Recorder) -> None:
    p = HttpPlugin(max_response_bytes=1000)
    try:
        c = cred("bearer", {"token": "t-big000"}, [f"{server.base}/*"])
        assert len(run(p, c, f"{server.base}/big?n=1000").value["body"]) == 1000
        with pytest.raises(ActionFailedError, match="1000"):
            run(p, c, f"{server.base}/big?n=5000")
        with pytest.raises(ActionFailedError, match="larger than 1000 bytes"):
            run(p, c, f"{server.base}/endless")
        # the cap counts decompressed bytes: a small gzip body can still be too big
        assert run(p, c, f"{server.base}/gzip?n=900").value["body"] == "z" * 900
        with pytest.raises(ActionFailedError, match="larger than 1000 bytes"):
            run(p, c, f"{server.base}/gzip?n=100000")
    finally:
        p.close()


def test_connection_refused_is_a_clear_error(plugin: HttpPlugin) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = cred("bearer", {"token": "t-closed"}, [f"http://127.0.0.1:{port}/*"])
    with pytest.raises(ActionFailedError, match="could not connect"):
        run(plugin, c, f"http://127.0.0.1:{port}/x")


def test_cookies_are_never_kept_between_requests(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("bearer", {"token": "t-cookies"}, [f"{server.base}/*"])
    result = run(plugin, c, f"{server.base}/setcookie")
    assert "session=s3cr3t-cookie" in result.value["headers"]["set-cookie"]
    run(plugin, c, f"{server.base}/echo")
    assert "cookie" not in server.seen()[1]["headers"]


def test_wrong_action_type_and_missing_credential(plugin: HttpPlugin) -> None:
    c = cred("bearer", {"token": "t-x12345"}, ["*"])
    with pytest.raises(ActionNotFoundError):
        plugin.execute("fetch", {"url": "http://127.0.0.1:1/"}, c)
    with pytest.raises(ParameterError):
        plugin.execute("request", {"url": "http://127.0.0.1:1/"}, None)
    with pytest.raises(CredentialMismatchError):
        plugin.execute("request", {"url": "http://127.0.0.1:1/"}, cred("pgp_key", {}, ["*"]))


# --- oauth2 ----------------------------------------------------------------------------------


def oauth(server: Recorder, **fields: Any) -> dict[str, Any]:
    return {
        "token_url": f"{server.base}/token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **fields,
    }


def test_oauth2_client_credentials_fetches_caches_and_reuses(
    plugin: HttpPlugin, server: Recorder
) -> None:
    c = cred("oauth2", oauth(server, scope="read write"), [f"{server.base}/api/*"])
    first = run(plugin, c, f"{server.base}/api/me")
    assert server.token_count == 1
    assert server.client_auth_seen == ["basic"]
    assert server.token_forms[0] == {"grant_type": "client_credentials", "scope": "read write"}
    assert first.new_state is not None
    token = first.new_state["access_token"]
    assert server.seen("/api/")[0]["headers"]["authorization"] == f"Bearer {token}"
    assert first.new_state["expires_at"] > time.time() + 3000
    nothing_leaked(first, token, CLIENT_SECRET)
    second = run(plugin, cred("oauth2", c.fields, c.allow, first.new_state), f"{server.base}/api/2")
    assert second.value["status"] == 200
    assert second.new_state is None
    assert server.token_count == 1


def test_oauth2_client_secret_in_body(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("oauth2", oauth(server, client_auth="body"), [f"{server.base}/api/*"])
    assert run(plugin, c, f"{server.base}/api/me").value["status"] == 200
    assert server.client_auth_seen == ["body"]
    assert server.token_forms[0]["client_secret"] == CLIENT_SECRET


def test_oauth2_token_near_expiry_is_refreshed(plugin: HttpPlugin, server: Recorder) -> None:
    c = cred("oauth2", oauth(server), [f"{server.base}/api/*"])
    state = run(plugin, c, f"{server.base}/api/1").new_state
    assert state is not None
    soon = {**state, "expires_at": time.time() + 30}  # inside the 300 s margin
    result = run(plugin, cred("oauth2", c.fields, c.allow, soon), f"{server.base}/api/2")
    assert server.token_count == 2
    assert result.new_state is not None
    assert result.new_state["access_token"] != state["access_token"]


def test_oauth2_401_with_cached_token_refreshes_once_and_retries(
    plugin: HttpPlugin, server: Recorder
) -> None:
    c = cred("oauth2", oauth(server), [f"{server.base}/api/*"])
    state = run(plugin, c, f"{server.base}/api/1").new_state
    server.valid_tokens.clear()  # the server revoked it; the cache still thinks it's fresh
    result = run(plugin, cred("oauth2", c.fields, c.allow, state), f"{server.base}/api/2")
    assert result.value["status"] == 200
    assert server.token_count == 2
    assert result.new_state is not None
    assert [r["path"] for r in server.seen("/api/")] == ["/api/1", "/api/2", "/api/2"]


def test_oauth2_401_with_a_fresh_token_is_returned_not_retried(
    plugin: HttpPlugin, server: Recorder
) -> None:
    server.valid_tokens = _NeverValid()
    c = cred("oauth2", oauth(server), [f"{server.base}/api/*"])
    result = run(plugin, c, f"{server.base}/api/1")
    assert result.value["status"] == 401
    assert server.token_count == 1
    assert result.new_state is not None  # the token is still worth keeping


class _NeverValid(set[str]):
    def __contains__(self, item: object) -> bool:
        return False


def test_oauth2_refresh_token_grant_rotates(plugin: HttpPlugin, server: Recorder) -> None:
    fields = oauth(server, grant_type="refresh_token", refresh_token="rt-initial-0")
    c = cred("oauth2", fields, [f"{server.base}/api/*"])
    first = run(plugin, c, f"{server.base}/api/1")
    assert server.token_forms[0]["refresh_token"] == "rt-initial-0"
    assert first.new_state is not None
    assert first.new_state["refresh_token"] == "rt-rotated-1"
    expired = {**first.new_state, "expires_at": time.time() - 5}
    second = run(plugin, cred("oauth2", fields, c.allow, expired), f"{server.base}/api/2")
    assert server.token_forms[1]["refresh_token"] == "rt-rotated-1"  # not the revoked one
    assert second.value["status"] == 200
    nothing_leaked(second, "rt-rotated-1", "rt-rotated-2", "rt-initial-0")


def test_oauth2_a_refused_refresh_token_falls_back_to_client_credentials(
    plugin: HttpPlugin, server: Recorder
) -> None:
    fields = oauth(server, grant_type="refresh_token", refresh_token="rt-revoked-9")
    c = cred("oauth2", fields, [f"{server.base}/api/*"])
    result = run(plugin, c, f"{server.base}/api/1")
    assert result.value["status"] == 200
    assert [f["grant_type"] for f in server.token_forms] == ["refresh_token", "client_credentials"]
    assert result.new_state is not None
    assert "refresh_token" not in result.new_state  # the refused one is not kept
    nothing_leaked(result, "rt-revoked-9", CLIENT_SECRET)


def test_oauth2_without_a_client_secret_a_refused_refresh_token_is_the_error(
    plugin: HttpPlugin, server: Recorder
) -> None:
    fields = oauth(server, grant_type="refresh_token", refresh_token="rt-revoked-9")
    fields["client_secret"] = ""
    c = cred("oauth2", fields, [f"{server.base}/api/*"])
    with pytest.raises(ActionFailedError) as failed:
        run(plugin, c, f"{server.base}/api/1")
    assert len(server.token_forms) == 1  # nothing to fall back to
    assert "client_credentials grant tried after it" not in str(failed.value)


def test_oauth2_when_both_grants_fail_both_are_named(plugin: HttpPlugin, server: Recorder) -> None:
    fields = oauth(server, grant_type="refresh_token", refresh_token="rt-initial-0")
    fields["client_secret"] = "wrong-secret-77"
    c = cred("oauth2", fields, [f"{server.base}/api/*"])
    with pytest.raises(ActionFailedError) as failed:
        run(plugin, c, f"{server.base}/api/1")
    text = str(failed.value)
    assert "the client_credentials grant tried after it failed too" in text
    assert failed.value.code == "invalid_credential"
    assert [f["grant_type"] for f in server.token_forms] == ["refresh_token", "client_credentials"]


@pytest.mark.parametrize(("margin", "renewed"), [(None, True), (30, False), (250, True)])
def test_oauth2_the_refresh_margin_is_300_s_or_the_credentials_own(
    plugin: HttpPlugin, server: Recorder, margin: int | None, renewed: bool
) -> None:
    fields = oauth(server) if margin is None else oauth(server, refresh_margin=margin)
    c = cred("oauth2", fields, [f"{server.base}/api/*"])
    state = run(plugin, c, f"{server.base}/api/1").new_state
    assert state is not None
    later = {**state, "expires_at": time.time() + 200}  # expires in 200 s
    run(plugin, cred("oauth2", fields, c.allow, later), f"{server.base}/api/2")
    assert server.token_count == (2 if renewed else 1)


def test_oauth2_a_refresh_margin_out_of_range_is_refused() -> None:
    p = HttpPlugin()
    try:
        base = {"token_url": "https://a.example/t", "client_id": "c", "client_secret": "s"}
        for bad in (-1, 86401, "soon", True):
            with pytest.raises(CredentialValidationError, match="refresh_margin"):
                p.validate_credential("oauth2", {**base, "refresh_margin": bad})
        assert p.validate_credential("oauth2", {**base, "refresh_margin": 120})["refresh_margin"]
    finally:
        p.close()


def test_oauth2_token_endpoint_error_is_clear_and_scrubbed(
    plugin: HttpPlugin, server: Recorder
) -> None:
    bad = "wrong-secret-123"
    c = cred("oauth2", oauth(server, client_secret=bad), [f"{server.base}/api/*"])
    with pytest.raises(ActionFailedError, match="invalid_client") as info:
        run(plugin, c, f"{server.base}/api/1")
    assert info.value.code == "invalid_credential"
    assert bad not in str(info.value)
    assert server.seen("/api/") == []


def test_oauth2_refreshed_state_survives_a_failed_request(
    plugin: HttpPlugin, server: Recorder
) -> None:
    fields = oauth(server, grant_type="refresh_token", refresh_token="rt-initial-0")
    c = cred("oauth2", fields, [f"{server.base}/*"])
    with pytest.raises(ActionFailedError, match="timed out"):
        run(plugin, c, f"{server.base}/sleep?s=60", timeout=2)
    assert server.token_count == 1  # rt-initial-0 is now revoked by rotation
    # The store never saw the new state, but the plugin kept it: no lost refresh token.
    result = run(plugin, c, f"{server.base}/api/1")
    assert result.value["status"] == 200
    assert server.token_count == 1
    assert result.new_state is not None
    assert result.new_state["refresh_token"] == "rt-rotated-1"


def test_oauth2_token_endpoint_redirect_is_not_followed(
    plugin: HttpPlugin, server: Recorder
) -> None:
    fields = oauth(server, token_url=f"{server.base}/redirect?to=/token&code=307")
    c = cred("oauth2", fields, [f"{server.base}/api/*"])
    with pytest.raises(ActionFailedError, match="redirect") as info:
        run(plugin, c, f"{server.base}/api/1")
    assert info.value.code == "invalid_credential"
    assert server.seen("/token") == []


def test_oauth2_public_client_sends_only_client_id(plugin: HttpPlugin, server: Recorder) -> None:
    fields = oauth(server, grant_type="refresh_token", refresh_token="rt-initial-0")
    del fields["client_secret"]
    c = cred("oauth2", fields, [f"{server.base}/api/*"])
    with pytest.raises(ActionFailedError, match="invalid_client"):
        run(plugin, c, f"{server.base}/api/1")  # this test server insists on a secret
    assert server.token_forms == [
        {"grant_type": "refresh_token", "refresh_token": "rt-initial-0", "client_id": CLIENT_ID}
    ]
    assert server.client_auth_seen == ["body"]


def test_oauth2_cached_token_of_another_client_is_ignored(
    plugin: HttpPlugin, server: Recorder
) -> None:
    c = cred("oauth2", oauth(server), [f"{server.base}/api/*"])
    state = run(plugin, c, f"{server.base}/api/1").new_state
    assert state is not None
    other_fields = oauth(server, scope="admin")
    result = run(plugin, cred("oauth2", other_fields, c.allow, state), f"{server.base}/api/2")
    assert result.new_state is not None
    assert server.token_count == 2


def test_oauth2_allowlist_is_checked_before_the_token_request(
    plugin: HttpPlugin, server: Recorder
) -> None:
    c = cred("oauth2", oauth(server), [f"{server.base}/api/*"])
    with pytest.raises(AccessDeniedError):
        run(plugin, c, f"{server.base}/elsewhere")
    assert server.seen() == []


# --- add-time helpers and the manifest --------------------------------------------------------


def test_validate_credential() -> None:
    check = HttpPlugin().validate_credential
    check("oauth2", {"token_url": "https://a.example/t", "client_id": "c", "client_secret": "s"})
    check("oauth2", {"token_url": "http://127.0.0.1:9/t", "client_id": "c", "client_secret": "s"})
    bad = [
        ("oauth2", {"token_url": "http://auth.example/t", "client_id": "c", "client_secret": "s"}),
        ("oauth2", {"token_url": "https://a.example/t", "client_id": "c"}),
        (
            "oauth2",
            {"token_url": "https://a.example/t", "client_id": "c", "grant_type": "refresh_token"},
        ),
        ("api_key", {"key": "k", "header": "Host"}),
        ("api_key", {"key": "k\nX: y"}),
        ("basic_auth", {"username": "a:b", "password": "p"}),
        ("bearer", {"token": "t", "extra_headers": "no colon here"}),
        ("bearer", {"token": "t", "extra_headers": "Host: evil"}),
    ]
    for type_, fields in bad:
        with pytest.raises(CredentialValidationError) as info:
            check(type_, fields)
        assert "evil" not in str(info.value)


def test_invalid_credential_fields_are_refused_at_request_time(
    plugin: HttpPlugin, server: Recorder
) -> None:
    c = cred("bearer", {"token": "t-1234567", "extra_headers": "garbage"}, [f"{server.base}/*"])
    with pytest.raises(CredentialValidationError, match="line 1"):
        run(plugin, c, f"{server.base}/echo")
    assert server.seen() == []


def test_manifest_describes_types_action_and_tool(plugin: HttpPlugin) -> None:
    m = plugin.manifest
    assert plugin.name == "http" and plugin.builtin
    assert [t.name for t in m.credential_types] == [
        "api_key",
        "bearer",
        "basic_auth",
        "oauth2",
        "hmac_api_key",
    ]
    api_key = m.credential_type("api_key")
    assert api_key is not None
    assert set(api_key.secret_fields) == {"key", "extra_headers"}
    oauth2 = m.credential_type("oauth2")
    assert oauth2 is not None
    assert set(oauth2.secret_fields) == {"client_secret", "refresh_token", "extra_headers"}
    grant = oauth2.field("grant_type")
    assert grant is not None and grant.options == ("client_credentials", "refresh_token")
    (tool,) = m.mcp_tools
    assert (tool.name, tool.action) == ("http_request", "request")
    action = m.action("request")
    assert action is not None
    assert [p.name for p in action.parameters] == [
        "method",
        "url",
        "headers",
        "query",
        "body",
        "body_json",
        "body_base64",
        "timeout",
    ]


def test_validate_allow_normalises() -> None:
    assert HttpPlugin().validate_allow(
        ["HTTPS://API.GitHub.com:443", "get,post https://x.example/v1/*", "*", "*"]
    ) == ["https://api.github.com/*", "GET,POST https://x.example/v1/*", "*"]
    with pytest.raises(CredentialValidationError, match="ftp"):
        HttpPlugin().validate_allow(["ftp://x.example/*"])


def test_close_is_idempotent() -> None:
    p = HttpPlugin()
    p.close()
    p.close()


# --- downloads for the installer (vultrino._net.download) -------------------------------------


def test_download_streams_to_disk_with_progress(server: Recorder, tmp_path: Any) -> None:
    from vultrino._net import download

    dest = tmp_path / "a.tar.gz"
    calls: list[tuple[int, int | None]] = []
    download(
        f"{server.base}/big?n=200000",
        dest,
        max_bytes=1 << 20,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert dest.read_bytes() == b"x" * 200000
    assert calls[-1] == (200000, 200000)
    assert server.seen()[0]["headers"]["accept-encoding"] == "identity"
    assert [p.name for p in tmp_path.iterdir()] == ["a.tar.gz"]  # no temp file left
    assert dest.stat().st_mode & 0o777 == 0o600


def test_download_follows_redirects(server: Recorder, other: Recorder, tmp_path: Any) -> None:
    from vultrino._net import download

    dest = tmp_path / "b.bin"
    download(f"{server.base}/redirect?to={other.base}/binary", dest, max_bytes=1000)
    assert dest.read_bytes() == bytes(range(256))


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("/big?n=5000", "limit"),
        ("/endless", "limit"),
        ("/redirect?to=/nowhere&code=404", "HTTP 404"),
        ("/loop", "redirected more than"),
    ],
)
def test_download_failures_leave_nothing(
    server: Recorder, tmp_path: Any, path: str, match: str
) -> None:
    from vultrino._net import download
    from vultrino.errors import InstallError

    dest = tmp_path / "c.tar.gz"
    with pytest.raises(InstallError, match=match):
        download(f"{server.base}{path}", dest, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_download_refuses_https_to_http_and_other_schemes(tmp_path: Any) -> None:
    from vultrino._net import _next_download_url, download
    from vultrino.errors import InstallError

    with pytest.raises(InstallError, match="plain http"):
        _next_download_url("https://a.example/x.tgz", "http://a.example/x.tgz")
    with pytest.raises(InstallError, match="non-HTTP"):
        _next_download_url("https://a.example/x.tgz", "file:///etc/passwd")
    assert _next_download_url("http://a.example/d/x", "y.tgz") == "http://a.example/d/y.tgz"
    with pytest.raises(InstallError, match="only http"):
        download("file:///etc/passwd", tmp_path / "x", max_bytes=10)


def test_download_timeout(server: Recorder, tmp_path: Any) -> None:
    from vultrino._net import download
    from vultrino.errors import InstallError

    with pytest.raises(InstallError, match="timed out"):
        download(f"{server.base}/sleep?s=60", tmp_path / "d", max_bytes=10, timeout=0.3)
