"""Exchange-style signed requests (``hmac_api_key``) against a local server that verifies
them the way Binance documents it.

The server knows the key pair. For every request it takes the raw query string, splits off the
trailing ``&signature=<hex>``, and recomputes HMAC-SHA256 with the secret over ``totalParams``
— the query string concatenated with the request body — then checks the key header, that
``timestamp`` is within ``recvWindow`` of its own clock, and that the parameters are sorted.
It answers 401 with what was wrong, or 200 with what it verified.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from vultrino.errors import (
    AccessDeniedError,
    CredentialValidationError,
    ParameterError,
)
from vultrino.plugins.base import CredentialView
from vultrino.plugins.http import HttpPlugin

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


class Exchange(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, header: str = "X-MBX-APIKEY") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.header = header
        self.seen: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def verify(raw_query: str, body: bytes, headers: Any, header: str) -> dict[str, Any]:
    """Binance's check, written from its documentation, independently of Vultrino's code."""
    total, sep, signature = raw_query.rpartition("&signature=")
    if not sep:
        return {"error": "no signature"}
    expected = hmac.new(API_SECRET.encode(), total.encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return {"error": "bad signature"}
    if headers.get(header) != API_KEY:
        return {"error": f"bad {header}"}
    params = parse_qsl(total, keep_blank_values=True)
    names = [n for n, _ in params]
    if names != sorted(names):
        return {"error": "not sorted"}
    values = dict(params)
    window = int(values["recvWindow"])
    if abs(time.time() * 1000 - int(values["timestamp"])) > window:
        return {"error": "outside recvWindow"}
    return {"verified": True, "params": params, "total": total + body.decode()}


class _Handler(BaseHTTPRequestHandler):
    server: Exchange

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = urlsplit(self.path).query
        answer = verify(query, body, self.headers, self.server.header)
        with self.server.lock:
            self.server.seen.append(
                {"path": self.path, "headers": dict(self.headers.items()), "body": body}
            )
        data = json.dumps(answer).encode()
        self.send_response(200 if answer.get("verified") else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET
    do_DELETE = do_GET


@pytest.fixture
def exchange() -> Iterator[Exchange]:
    server = Exchange()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def plugin() -> Iterator[HttpPlugin]:
    p = HttpPlugin()
    yield p
    p.close()


def cred(allow: list[str], **fields: Any) -> CredentialView:
    return CredentialView(
        alias="binance",
        type="hmac_api_key",
        fields={"api_key": API_KEY, "api_secret": API_SECRET, **fields},
        allow=tuple(allow),
        secret_fields=("api_key", "api_secret"),
    )


def test_a_signed_get_verifies_and_the_key_is_scrubbed(
    plugin: HttpPlugin, exchange: Exchange
) -> None:
    c = cred([f"{exchange.base}/*"])
    result = plugin.execute(
        "request",
        {
            "url": f"{exchange.base}/api/v3/order?symbol=LTCBTC",
            "query": {"side": "BUY", "type": "LIMIT", "note": "a b&c"},
        },
        c,
    )
    assert result.value["status"] == 200, result.value
    answer = json.loads(result.value["body"])
    assert answer["verified"] is True
    names = [n for n, _ in answer["params"]]
    assert names == ["note", "recvWindow", "side", "symbol", "timestamp", "type"]
    assert dict(answer["params"])["recvWindow"] == "5000"
    assert dict(answer["params"])["note"] == "a b&c"  # percent-encoded on the wire
    (seen,) = exchange.seen
    assert "note=a%20b%26c" in seen["path"]
    assert seen["headers"]["X-MBX-APIKEY"] == API_KEY
    text = json.dumps(result.value)
    assert API_KEY not in text and API_SECRET not in text
    assert "Authorization" not in seen["headers"]


def test_a_post_signs_the_query_followed_by_the_body(
    plugin: HttpPlugin, exchange: Exchange
) -> None:
    c = cred([f"{exchange.base}/*"], recv_window=60000)
    body = "quantity=1&price=0.1"
    result = plugin.execute(
        "request",
        {
            "method": "POST",
            "url": f"{exchange.base}/api/v3/order",
            "query": {"symbol": "LTCBTC"},
            "body": body,
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        c,
    )
    answer = json.loads(result.value["body"])
    assert result.value["status"] == 200, answer
    stamp = dict(answer["params"])["timestamp"]
    # totalParams: the query string, then the body, concatenated as Binance documents it
    assert answer["total"] == f"recvWindow=60000&symbol=LTCBTC&timestamp={stamp}" + body
    assert exchange.seen[0]["body"] == body.encode()


def test_the_header_name_is_the_credentials(plugin: HttpPlugin) -> None:
    server = Exchange(header="X-API-KEY")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        c = cred([f"{server.base}/*"], header_name="X-API-KEY")
        result = plugin.execute("request", {"url": f"{server.base}/v1/balance"}, c)
        assert result.value["status"] == 200, result.value
        assert "X-MBX-APIKEY" not in server.seen[0]["headers"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_signature_the_caller_brings_is_refused_before_anything_is_sent(
    plugin: HttpPlugin, exchange: Exchange
) -> None:
    c = cred([f"{exchange.base}/*"])
    for query in ({"signature": "00"}, {"timestamp": "1"}, {"recvWindow": "999999"}):
        with pytest.raises(ParameterError, match="set by Vultrino"):
            plugin.execute("request", {"url": f"{exchange.base}/x", "query": query}, c)
    with pytest.raises(ParameterError, match="'signature' is set by Vultrino"):
        plugin.execute("request", {"url": f"{exchange.base}/x?signature=ab"}, c)
    assert exchange.seen == []


def test_plain_http_off_loopback_and_urls_outside_the_allowlist_are_refused(
    plugin: HttpPlugin, exchange: Exchange
) -> None:
    c = cred(["http://api.exchange.test/*", f"{exchange.base}/api/*"])
    with pytest.raises(AccessDeniedError, match="https only"):
        plugin.execute("request", {"url": "http://api.exchange.test/api/v3/account"}, c)
    with pytest.raises(AccessDeniedError, match="allowlist"):
        plugin.execute("request", {"url": f"{exchange.base}/other"}, c)
    assert exchange.seen == []


def test_fields_are_checked_when_added(plugin: HttpPlugin) -> None:
    ok = plugin.validate_credential("hmac_api_key", {"api_key": "k", "api_secret": "s"})
    assert ok["header_name"] == "X-MBX-APIKEY" and ok["recv_window"] == 5000
    with pytest.raises(CredentialValidationError, match="api_secret"):
        plugin.validate_credential("hmac_api_key", {"api_key": "k"})
    with pytest.raises(CredentialValidationError, match="recv_window"):
        plugin.validate_credential(
            "hmac_api_key", {"api_key": "k", "api_secret": "s", "recv_window": 70000}
        )
    with pytest.raises(CredentialValidationError, match="header name"):
        plugin.validate_credential(
            "hmac_api_key", {"api_key": "k", "api_secret": "s", "header_name": "Host"}
        )
