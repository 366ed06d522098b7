"""Web UI sessions, CSRF tokens and the login lockout: standard library only, in memory.

A session is a random id (the cookie) with its own CSRF token. A browser gets an anonymous
session when it first asks for the login page (so the login form carries a CSRF token too);
a successful login throws that one away and starts a new session under a new id, so an id
planted before login is worth nothing after it (no fixation). Sessions end at logout, after
:data:`IDLE_S` without a request, or :data:`MAX_AGE_S` after login; all of them end when the
server stops.

The lockout counts failed logins per client address: :data:`MAX_FAILURES` within
:data:`FAILURE_WINDOW_S` lock that address out for :data:`LOCKOUT_S`, during which even the
right password is refused.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "FAILURE_WINDOW_S",
    "IDLE_S",
    "LOCKOUT_S",
    "MAX_AGE_S",
    "MAX_FAILURES",
    "MAX_SESSIONS",
    "LoginLimiter",
    "Session",
    "Sessions",
]

IDLE_S = 30 * 60.0
MAX_AGE_S = 12 * 3600.0
MAX_FAILURES = 5
FAILURE_WINDOW_S = 5 * 60.0
LOCKOUT_S = 15 * 60.0
MAX_SESSIONS = 10_000
"""Live sessions kept at most: past it the oldest anonymous one is dropped."""


@dataclass
class Session:
    id: str
    csrf: str
    authenticated: bool
    created: float
    seen: float
    data: dict[str, str] = field(default_factory=dict)

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            self.csrf.encode(), str(presented).encode("utf-8", "replace")
        )


class Sessions:
    """The live sessions by id. ``clock`` is monotonic seconds (injectable for tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def _new(self, authenticated: bool) -> Session:
        now = self._clock()
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), authenticated, now, now)
        with self._lock:
            self._by_id[s.id] = s
            if len(self._by_id) > MAX_SESSIONS:
                self._evict()
        return s

    def _evict(self) -> None:
        """Drop the oldest anonymous session (anyone can make those by asking for the login
        page, so a flood of them must not push out a logged-in one), else the oldest."""
        for sid, old in self._by_id.items():
            if not old.authenticated:
                del self._by_id[sid]
                return
        self._by_id.popitem(last=False)

    def anonymous(self) -> Session:
        """A new session that is not logged in (it carries the login form's CSRF token)."""
        return self._new(False)

    def get(self, session_id: str | None) -> Session | None:
        """The live session of a cookie value, or None (unknown, idle too long, too old)."""
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            s = self._by_id.get(session_id)
            if s is None:
                return None
            if now - s.seen > IDLE_S or (s.authenticated and now - s.created > MAX_AGE_S):
                del self._by_id[session_id]
                return None
            s.seen = now
            self._by_id.move_to_end(session_id)
            return s

    def login(self, old: Session | None) -> Session:
        """A fresh logged-in session under a new id; ``old`` (the anonymous one) ends."""
        if old is not None:
            self.end(old.id)
        return self._new(True)

    def end(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(session_id, None)


class LoginLimiter:
    """Failed logins per client address, and the lockout they lead to."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked_for(self, client: str) -> float:
        """Seconds left of ``client``'s lockout (0: not locked out)."""
        now = self._clock()
        with self._lock:
            until = self._locked_until.get(client)
            if until is None:
                return 0.0
            if until <= now:
                del self._locked_until[client]
                return 0.0
            return until - now

    def failed(self, client: str) -> bool:
        """Count a failed login; True when it locked the client out."""
        now = self._clock()
        with self._lock:
            times = self._failures.setdefault(client, deque())
            times.append(now)
            while times and now - times[0] > FAILURE_WINDOW_S:
                times.popleft()
            if len(times) >= MAX_FAILURES:
                self._locked_until[client] = now + LOCKOUT_S
                del self._failures[client]
                return True
            return False

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
