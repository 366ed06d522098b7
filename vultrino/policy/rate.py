"""Rate limits: one token bucket per agent (and per ``[[policies]]`` credential bucket).

The buckets live in this process, unless the limiter is given a shared backend: then every
process using that backend draws from the same bucket (the PostgreSQL store keeps them in the
database, so N ``vultrino serve`` replicas together allow exactly the configured rate).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vultrino.policy.profile import Rate

__all__ = ["RateLimiter", "SharedBuckets"]

#: take one token from a bucket shared with other processes: (bucket, count, period) -> wait
SharedBuckets = Callable[[str, int, float], float]


class RateLimiter:
    """Token buckets: ``rate.count`` calls at once, refilled evenly over the period.

    One limiter lives in each call pipeline (one per :class:`~vultrino.core.Vultrino`).
    ``shared`` is asked once, on the first call, for the store's shared buckets; when it
    answers None (a file store) the buckets are this process's own.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        shared: Callable[[], SharedBuckets | None] | None = None,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float, Rate]] = {}  # name -> (tokens, at, rate)
        self._find_shared = shared
        self._shared: SharedBuckets | None = None

    def take(self, agent: str, rate: Rate) -> float:
        """Take one token: 0.0 when the call may go ahead, else seconds until one is free."""
        if self._find_shared is not None:
            self._shared, self._find_shared = self._find_shared(), None
        if self._shared is not None:
            return self._shared(agent, rate.count, rate.period)
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
