"""Rate limits: one token bucket per agent, in this process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vultrino.policy.profile import Rate

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets per agent: ``rate.count`` calls at once, refilled evenly over the period.

    One limiter lives in each call pipeline (one per :class:`~vultrino.core.Vultrino`), so
    limits hold per process.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float, Rate]] = {}  # name -> (tokens, at, rate)

    def take(self, agent: str, rate: Rate) -> float:
        """Take one token: 0.0 when the call may go ahead, else seconds until one is free."""
        now = self._clock()
        with self._lock:
            tokens, at, old = self._buckets.get(agent, (float(rate.count), now, rate))
            if old != rate:  # the profile changed: start its new bucket full
                tokens, at = float(rate.count), now
            tokens = min(float(rate.count), tokens + (now - at) * rate.count / rate.period)
            if tokens >= 1.0:
                self._buckets[agent] = (tokens - 1.0, now, rate)
                return 0.0
            self._buckets[agent] = (tokens, now, rate)
            return (1.0 - tokens) * rate.period / rate.count
