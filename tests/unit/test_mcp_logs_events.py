"""The MCP log router (vultrino/mcp/_logs.py) and the HTTP event store (vultrino/mcp/http.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp.server.streamable_http import EventMessage
from mcp.types import JSONRPCResponse

from vultrino.mcp import _logs
from vultrino.mcp.http import MemoryEventStore


@pytest.fixture
def router() -> Iterator[None]:
    _logs.install()
    level = logging.getLogger("vultrino.plugin").level
    yield
    logging.getLogger("vultrino.plugin").setLevel(level)
    _logs.set_fallback(None)


def test_levels_map_from_python() -> None:
    assert _logs.level_of(logging.DEBUG) == "debug"
    assert _logs.level_of(logging.INFO) == "info"
    assert _logs.level_of(logging.WARNING) == "warning"
    assert _logs.level_of(logging.ERROR) == "error"
    assert _logs.level_of(logging.CRITICAL) == "critical"


def test_a_record_reaches_only_the_sink_routed_to_its_thread(router: None) -> None:
    a: list[dict[str, Any]] = []
    b: list[dict[str, Any]] = []
    sink_a, sink_b = _logs.LogSink(a.append), _logs.LogSink(b.append)
    sink_a.set_level("info")
    sink_b.set_level("info")
    log = logging.getLogger("vultrino.plugin.unit")

    def in_b() -> None:
        with _logs.routed(sink_b):
            log.warning("for b")

    with _logs.routed(sink_a):
        log.info("for a %s", 1)
        t = threading.Thread(target=in_b)
        t.start()
        t.join()
    log.warning("for nobody")  # no sink routed, no fallback
    assert a == [{"level": "info", "logger": "vultrino.plugin.unit", "data": "for a 1"}]
    assert b == [{"level": "warning", "logger": "vultrino.plugin.unit", "data": "for b"}]


def test_nothing_is_sent_before_a_level_is_set_and_below_it_after(router: None) -> None:
    got: list[dict[str, Any]] = []
    sink = _logs.LogSink(got.append)
    _logs.set_fallback(sink)
    log = logging.getLogger("vultrino.mcp")
    log.error("before")
    sink.set_level("error")
    log.warning("below")
    log.error("at")
    assert [g["data"] for g in got] == ["at"]
    with pytest.raises(ValueError, match="one of debug, info"):
        sink.set_level("loud")


def test_a_request_sink_shares_its_connections_level(router: None) -> None:
    shared = _logs.LogSink(lambda p: None)
    got: list[dict[str, Any]] = []
    per_request = shared.via(got.append)
    with _logs.routed(per_request):
        logging.getLogger("vultrino.plugin.unit").warning("unset")
        shared.set_level("warning")  # set later, on the connection
        logging.getLogger("vultrino.plugin.unit").warning("set")
    assert [g["data"] for g in got] == ["set"]


def test_a_sink_that_logs_while_sending_does_not_loop(router: None) -> None:
    calls: list[dict[str, Any]] = []

    def send(params: dict[str, Any]) -> None:
        calls.append(params)
        logging.getLogger("vultrino.mcp").warning("the send itself logs")

    sink = _logs.LogSink(send)
    sink.set_level("debug")
    with _logs.routed(sink):
        logging.getLogger("vultrino.mcp").warning("once")
    assert [c["data"] for c in calls] == ["once"]


def _response(n: int) -> Any:
    return JSONRPCResponse(jsonrpc="2.0", id=n, result={})


def test_the_event_store_replays_a_stream_after_an_id_and_nothing_else() -> None:
    async def main() -> None:
        store = MemoryEventStore()
        prime = await store.store_event("s1", None)
        first = await store.store_event("s1", _response(1))
        await store.store_event("s2", _response(99))  # another stream
        second = await store.store_event("s1", _response(2))
        got: list[EventMessage] = []

        async def collect(event: EventMessage) -> None:
            got.append(event)

        assert await store.replay_events_after(prime, collect) == "s1"
        assert [(e.event_id, e.message.id) for e in got] == [(first, 1), (second, 2)]  # type: ignore[union-attr]
        got.clear()
        assert await store.replay_events_after(second, collect) == "s1"
        assert got == []
        assert await store.replay_events_after("never-given", collect) is None
        assert len({prime, first, second}) == 3 and all(len(i) >= 16 for i in (prime, first))

    anyio.run(main)


def test_the_event_store_is_bounded_oldest_first() -> None:
    async def main() -> None:
        store = MemoryEventStore(max_events=3)
        ids = [await store.store_event("s", _response(n)) for n in range(5)]
        assert store.stored() == 3
        got: list[EventMessage] = []

        async def collect(event: EventMessage) -> None:
            got.append(event)

        assert await store.replay_events_after(ids[0], collect) is None  # dropped
        assert await store.replay_events_after(ids[2], collect) == "s"
        assert [e.message.id for e in got] == [3, 4]  # type: ignore[union-attr]

    anyio.run(main)
    with pytest.raises(ValueError, match="positive"):
        MemoryEventStore(max_events=0)
