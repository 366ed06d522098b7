"""Both HTTP servers listen with TCP_NODELAY, which accepted connections inherit: without it a
keep-alive client's next request waits out its delayed ACK (about 40 ms) behind a response
written in two parts. benchmarks/bench_remote.py measures the round trips."""

from __future__ import annotations

import socket

from vultrino.mcp.http import _bind as mcp_bind
from vultrino.server.run import _bind as serve_bind


def _accepted_nodelay(listener: socket.socket) -> int:
    listener.setblocking(True)
    with socket.create_connection(listener.getsockname()[:2], timeout=5) as client:
        accepted, _ = listener.accept()
        with accepted:
            client.sendall(b"x")
            return accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_mcp_http_listens_with_tcp_nodelay() -> None:
    sock = mcp_bind("127.0.0.1", 0)
    with sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert _accepted_nodelay(sock) != 0


def test_serve_listens_with_tcp_nodelay() -> None:
    sock = serve_bind("127.0.0.1", 0)
    with sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert _accepted_nodelay(sock) != 0
