"""What MCP logging and resumable HTTP streams cost per entry and per event.

- **A plugin log line that reaches a client** (``vultrino.mcp._logs``): one ``warning`` on a
  ``vultrino.plugin.*`` logger, routed to a client's sink at ``info`` (its send appends to a
  list), against the same line with no client routed (what every call paid before: the record
  is made and handed to the handlers). Both run in alternating rounds; the figures are medians.
- **The event store** (``vultrino.mcp.http.MemoryEventStore``): storing one event into a full
  store (4096 events, so each store also drops the oldest), and replaying a stream of 64
  events after its priming event while the rest of a full store holds other streams' events.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

ROUNDS_SMOKE, ROUNDS = 3, 15
N_SMOKE, N = 200, 5000
GOAL_LOG_RATIO = 2.0
GOAL_STORE_US = 20.0
GOAL_REPLAY_MS = 5.0


def _per_call_us(fn: Any, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def run(res: Any, smoke: bool) -> None:
    import anyio
    from mcp.types import JSONRPCResponse

    from vultrino.mcp import _logs
    from vultrino.mcp.http import MAX_EVENTS, MemoryEventStore

    rounds, n = (ROUNDS_SMOKE, N_SMOKE) if smoke else (ROUNDS, N)
    _logs.install()
    log = logging.getLogger("vultrino.plugin.bench")
    saved = logging.getLogger("vultrino.plugin").level
    sent: list[dict[str, Any]] = []
    sink = _logs.LogSink(sent.append)
    sink.set_level("info")
    # the records must not reach stderr while measuring
    quiet = logging.NullHandler()
    logging.getLogger().addHandler(quiet)

    def unrouted() -> None:
        log.warning("plugin says %s", "hello")

    def routed() -> None:
        with _logs.routed(sink):
            log.warning("plugin says %s", "hello")

    with_sink: list[float] = []
    without: list[float] = []
    try:
        for _ in range(rounds):
            without.append(_per_call_us(unrouted, n))
            with_sink.append(_per_call_us(routed, n))
            sent.clear()
    finally:
        logging.getLogger().removeHandler(quiet)
        logging.getLogger("vultrino.plugin").setLevel(saved)
    sent_us, made_us = statistics.median(with_sink), statistics.median(without)
    res.add(
        "mcp log: plugin log line sent to the client",
        sent_us,
        "us",
        note=f"median of {rounds} alternating rounds; the same line with no client routed "
        f"(making the record, as every call did before): {made_us:.2f} us",
    )
    res.add(
        "mcp log: sent to the client / only made",
        sent_us / made_us,
        "x",
        goal=GOAL_LOG_RATIO,
        note="routing a line to its client costs less than making it again",
    )

    message: Any = JSONRPCResponse(jsonrpc="2.0", id=1, result={})
    store_us: list[float] = []
    replay_ms: list[float] = []

    async def measure() -> None:
        store = MemoryEventStore()
        for i in range(MAX_EVENTS):
            await store.store_event(f"other-{i % 16}", message)
        t = time.perf_counter()
        for _ in range(n):
            await store.store_event("s", message)
        store_us.append((time.perf_counter() - t) / n * 1e6)

        fresh = MemoryEventStore()
        prime = await fresh.store_event("mine", None)
        for i in range(MAX_EVENTS - 1):  # every 64th event is the resumed stream's
            await fresh.store_event("mine" if i % 64 == 0 else f"other-{i % 16}", message)
        got: list[Any] = []

        async def collect(event: Any) -> None:
            got.append(event)

        t = time.perf_counter()
        await fresh.replay_events_after(prime, collect)
        replay_ms.append((time.perf_counter() - t) * 1e3)

    for _ in range(rounds):
        anyio.run(measure)
    res.add(
        "mcp http: store one SSE event (full store)",
        statistics.median(store_us),
        "us",
        goal=GOAL_STORE_US,
        note=f"median of {rounds} rounds; {MAX_EVENTS} events kept, the oldest dropped",
    )
    res.add(
        "mcp http: replay a stream after Last-Event-ID",
        statistics.median(replay_ms),
        "ms",
        goal=GOAL_REPLAY_MS,
        note=f"median of {rounds} rounds; full store of {MAX_EVENTS} events, most of them "
        "other streams'",
    )
