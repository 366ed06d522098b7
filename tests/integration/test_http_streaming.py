"""The HTTP action's streaming mode, through the pipeline (the forward proxy's way in): only
the pipeline can ask for it, only an action that declares it can stream, and a streamed call
keeps every check of a buffered one (the allowlist before any I/O, the redirect rule for a body
sent once, the charset rule), with its audit record written when its body has gone through."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.localhttp import LocalServer, serving
from vultrino.core import Vultrino
from vultrino.errors import AccessDeniedError, ActionFailedError, ParameterError
from vultrino.plugins.base import STREAM_PARAM, StreamedBody, Streaming
from vultrino.store import KdfParams

SECRET = "tok-stream-0123456789abcdef"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/keep":  # a redirect that keeps the method and body
            self.send_response(307)
            self.send_header("Location", "/landed")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        ctype = "text/plain; charset=utf-16" if self.path == "/utf16" else "text/plain"
        body = f"token={SECRET};".encode() * 3
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _handle
    do_POST = _handle


@pytest.fixture
def upstream() -> Iterator[LocalServer]:
    with serving(LocalServer(_Handler)) as up:
        yield up


@pytest.fixture
def v(isolated_home: Path, upstream: LocalServer) -> Iterator[Vultrino]:
    with Vultrino.init(isolated_home, "pw-streaming", kdf=KdfParams.minimal()) as v:
        v.add_credential("up", "bearer", {"token": SECRET}, allow=[f"{upstream.base}/*"])
        yield v


def _read(body: StreamedBody) -> bytes:
    try:
        return b"".join(body.chunks())
    finally:
        body.close()


def test_a_streamed_call_is_scrubbed_and_audited_when_its_body_is_read(
    v: Vultrino, upstream: LocalServer, isolated_home: Path
) -> None:
    body = v.execute("up", "request", {"url": f"{upstream.base}/x"}, stream=Streaming())
    assert isinstance(body, StreamedBody) and body.status == 200
    log = isolated_home / "audit.log"
    before = log.read_text().count("\n") if log.exists() else 0
    assert _read(body) == b"token=[REDACTED];" * 3
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == before + 1
    assert records[-1]["outcome"] == "ok" and records[-1]["bytes"] == len(b"token=[REDACTED];") * 3
    assert ("content-length", "51") not in body.headers  # the body may have changed length


def test_only_the_pipeline_can_ask_for_a_stream(v: Vultrino, upstream: LocalServer) -> None:
    with pytest.raises(ParameterError, match="unknown parameter"):
        v.execute("up", "request", {"url": f"{upstream.base}/x", STREAM_PARAM: "x"})


def test_the_allowlist_and_the_redirect_rule_hold_for_a_streamed_body(
    v: Vultrino, upstream: LocalServer
) -> None:
    with pytest.raises(AccessDeniedError):
        v.execute("up", "request", {"url": "http://127.0.0.2:9/x"}, stream=Streaming())
    chunks = iter([b"a" * 1000, b"b" * 1000])
    with pytest.raises(ActionFailedError, match="sent only once") as err:
        v.execute(
            "up",
            "request",
            {"method": "POST", "url": f"{upstream.base}/keep"},
            stream=Streaming(body=chunks, length=2000),
        )
    assert f"{upstream.base}/landed" in str(err.value)


def test_a_charset_the_byte_scrubber_cannot_read_is_refused(
    v: Vultrino, upstream: LocalServer
) -> None:
    with pytest.raises(ActionFailedError, match="utf-16"):
        v.execute("up", "request", {"url": f"{upstream.base}/utf16"}, stream=Streaming())


def test_an_action_that_does_not_declare_streams_cannot_stream(isolated_home: Path) -> None:
    from tests.e2e.mcp_helpers import PASSWORD, make_home

    home = make_home(isolated_home / "wasm-home")
    with Vultrino.open(home.root, PASSWORD) as wv:
        with pytest.raises(ParameterError, match="cannot stream"):
            wv.execute("echo-one", "echo", {"message": "hi"}, stream=Streaming())
        assert wv.execute("echo-one", "echo", {"message": "hi"})["params"] == {"message": "hi"}
