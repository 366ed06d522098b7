"""The approvals inbox: gated calls whose client cannot ask a person wait here for one.

A REST call, or an MCP call over HTTP, whose profile (or a ``prompt`` policy) says a person must
approve it has no person at the other end: the client is a program. Instead of being refused,
the call waits — in its worker thread, for at most ``approval_wait_s`` — in this inbox, which
``GET /api/v1/approvals``, ``POST /api/v1/approvals/{id}`` and ``vultrino approvals
list|approve|deny`` show and decide. A call nobody decides in time is refused (``expired``);
when the server shuts down, every waiting call is refused (``unavailable``) at once, so none
holds the shutdown up. Each decision is audited with who made it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from vultrino.errors import ApprovalNotFoundError, PermissionDeniedError
from vultrino.policy.approval import Approval, ApprovalRequest, Approver

__all__ = ["Inbox", "Waiting"]

_MAX_WAITING = 1000


@dataclass
class Waiting:
    """One call waiting for a person."""

    id: str
    request: ApprovalRequest
    key: str | None  # the name of the API key the call came with
    key_id: str | None  # its id (a key may not approve its own call)
    created_at: str
    deadline: float  # monotonic
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Approval | None = None
    decided_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        r = self.request
        return {
            "id": self.id,
            "agent": r.agent or None,
            "key": self.key,
            "plugin": r.plugin,
            "action": r.action,
            "credential": r.alias,
            "tool": r.tool,
            "summary": r.summary,
            "message": r.message(),
            "created_at": self.created_at,
            "expires_in_s": round(max(self.deadline - time.monotonic(), 0.0), 1),
        }


class Inbox:
    """Waiting calls by id. ``on_decided(waiting)`` is called once per decision a person made
    (to audit it); timeouts and shutdown are recorded by the call's own audit record."""

    def __init__(self, wait_s: float, on_decided: Callable[[Waiting], None] | None = None) -> None:
        self.wait_s = wait_s
        self._on_decided = on_decided
        self._lock = threading.Lock()
        self._waiting: dict[str, Waiting] = {}
        self._closed = False

    def approver(self, key: str | None = None, key_id: str | None = None) -> Approver:
        """The approver of calls made with the API key named ``key`` (None: an agent token
        or the server's token): each gated call waits in the inbox for a decision."""

        def ask(request: ApprovalRequest) -> Approval:
            return self.wait(request, key, key_id)

        return ask

    def wait(
        self, request: ApprovalRequest, key: str | None = None, key_id: str | None = None
    ) -> Approval:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        item = Waiting(
            id=secrets.token_hex(4),
            request=request,
            key=key,
            key_id=key_id,
            created_at=now,
            deadline=time.monotonic() + self.wait_s,
        )
        with self._lock:
            if self._closed or len(self._waiting) >= _MAX_WAITING:
                return "unavailable"
            self._waiting[item.id] = item
        try:
            item.done.wait(self.wait_s)
        finally:
            with self._lock:
                self._waiting.pop(item.id, None)
        return item.outcome or "expired"

    def waiting(self) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._waiting.values())
        return [w.to_dict() for w in sorted(items, key=lambda w: w.deadline)]

    def decide(self, approval_id: str, *, approve: bool, by: str, by_key: str | None) -> Waiting:
        """Approve or deny a waiting call; ApprovalNotFoundError when none waits under that
        id. A key cannot approve a call made with itself."""
        with self._lock:
            item = self._waiting.get(approval_id)
            if item is None or item.done.is_set():
                raise ApprovalNotFoundError(
                    f"no call waits for approval under id {approval_id[:16]!r} (decided already, "
                    "expired, or never there); `vultrino approvals list` shows the waiting ones"
                )
            if approve and by_key is not None and item.key_id == by_key:
                raise PermissionDeniedError(
                    "a key cannot approve a call made with itself; ask another person",
                    agent=item.request.agent,
                    verb="admin",
                )
            item.outcome = "granted" if approve else "declined"
            item.decided_by = by
            item.done.set()
        if self._on_decided is not None:
            self._on_decided(item)
        return item

    def close(self) -> None:
        """Refuse every waiting call now, and every later one (the server is stopping)."""
        with self._lock:
            self._closed = True
            items = list(self._waiting.values())
        for item in items:
            if not item.done.is_set():
                item.outcome = "unavailable"
                item.done.set()
