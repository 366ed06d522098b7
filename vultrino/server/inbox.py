"""The approvals inbox: gated calls whose client cannot ask a person wait here for one.

A REST call, or an MCP call over HTTP, whose profile (or a ``prompt`` policy) says a person must
approve it has no person at the other end: the client is a program. Instead of being refused,
the call waits — in its worker thread, for at most ``approval_wait_s`` — in this inbox, which
``GET /api/v1/approvals``, ``POST /api/v1/approvals/{id}`` and ``vultrino approvals
list|approve|deny`` show and decide. A call nobody decides in time is refused (``expired``);
when the server shuts down, every waiting call is refused (``unavailable``) at once, so none
holds the shutdown up. Each decision is audited with who made it.

With the store in PostgreSQL the inbox is shared (``shared``, a
:class:`~vultrino.store.pg_approvals.ApprovalTable`): a waiting call is a row every replica
lists and any replica can decide; the decision reaches the replica where the call waits
through NOTIFY, or its poll of the row every second, and is audited once, by the replica
where the person decided (docs/scaling.md).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from vultrino.errors import ApprovalNotFoundError, PermissionDeniedError, StoreError
from vultrino.policy.approval import Approval, ApprovalRequest, Approver

if TYPE_CHECKING:
    from vultrino.store.pg_approvals import ApprovalTable

__all__ = ["Inbox", "Seal", "Waiting"]

_MAX_WAITING = 1000
_POLL_S = 1.0  # a call waiting in a shared inbox re-reads its row this often (a lost NOTIFY)
_OUTCOMES: dict[str, Approval] = {
    "granted": "granted",
    "declined": "declined",
    "expired": "expired",
    "unavailable": "unavailable",
}


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
    (to audit it); timeouts and shutdown are recorded by the call's own audit record.
    ``shared``: the approvals table every replica shares (None: this process's calls only),
    with ``seal``: how a person's decision is signed and checked (the store's key), so that
    only a replica holding the key can approve a call held in the table."""

    def __init__(
        self,
        wait_s: float,
        on_decided: Callable[[Waiting], None] | None = None,
        shared: ApprovalTable | None = None,
        seal: Seal | None = None,
    ) -> None:
        if shared is not None and seal is None:
            raise ValueError("a shared inbox needs a seal to sign and check decisions")
        self.wait_s = wait_s
        self._on_decided = on_decided
        self._lock = threading.Lock()
        self._waiting: dict[str, Waiting] = {}
        self._closed = False
        self._shared = shared
        self._seal = seal

    def notice(self, approval_id: str) -> None:
        """A decision on ``approval_id`` was announced (the shared table's NOTIFY): wake the
        call if it waits here, to read it."""
        with self._lock:
            item = self._waiting.get(approval_id)
        if item is not None:
            item.done.set()

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
            id=secrets.token_hex(4 if self._shared is None else 6),
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
            if self._shared is not None:
                return self._wait_shared(self._shared, item)
            item.done.wait(self.wait_s)
        finally:
            with self._lock:
                self._waiting.pop(item.id, None)
        return item.outcome or "expired"

    def _wait_shared(self, table: ApprovalTable, item: Waiting) -> Approval:
        """Hold the call in the shared table until a person on any replica decides, its
        deadline passes, or this server stops; a database that cannot be reached refuses it
        (``unavailable``) rather than hold it blind."""
        r = item.request
        shown = {
            "agent": r.agent or None,
            "key_name": item.key,
            "key_id": item.key_id,
            "plugin": r.plugin,
            "action": r.action,
            "alias": r.alias,
            "tool": r.tool,
            "summary": r.summary,
        }
        try:
            table.hold(item.id, shown, self.wait_s)
        except StoreError:
            return "unavailable"
        while True:
            left = item.deadline - time.monotonic()
            if left <= 0 or self._closed:
                final: Approval = "unavailable" if self._closed else "expired"
                try:
                    settled = table.settle(item.id, final)
                except StoreError:
                    return final
                return self._honoured(item, *settled)
            item.done.wait(min(left, _POLL_S))
            item.done.clear()  # a notice after this wakes the next wait at once
            if self._closed:
                continue
            try:
                decided = table.decision(item.id)
            except StoreError:
                continue  # the database is away: the deadline still bounds the wait
            if decided is not None:
                return self._honoured(item, *decided)

    def _honoured(
        self, item: Waiting, decision: str, by: str | None, sig: bytes | None
    ) -> Approval:
        """The outcome a decision read from the shared table gives the call: a grant only
        when its signature (by the store's key, over this very call) checks out; a grant
        that does not (a row written without the key) refuses the call."""
        outcome = _OUTCOMES.get(decision, "unavailable")
        if outcome != "granted":
            return outcome
        assert self._seal is not None
        message = _decision_message(item.id, decision, by or "", item.request, item.key_id)
        if sig is None or not self._seal.check(message, sig):
            return "unavailable"
        return "granted"

    def waiting(self) -> list[dict[str, Any]]:
        if self._shared is not None:
            return [_shown(row) for row in self._shared.pending()]
        with self._lock:
            items = list(self._waiting.values())
        return [w.to_dict() for w in sorted(items, key=lambda w: w.deadline)]

    def decide(self, approval_id: str, *, approve: bool, by: str, by_key: str | None) -> Waiting:
        """Approve or deny a waiting call; ApprovalNotFoundError when none waits under that
        id. A key cannot approve a call made with itself."""
        if self._shared is not None:
            return self._decide_shared(self._shared, approval_id, approve, by, by_key)
        with self._lock:
            item = self._waiting.get(approval_id)
            if item is None or item.done.is_set():
                raise ApprovalNotFoundError(
                    f"no call waits for approval under id {approval_id[:16]!r} (decided already, "
                    "expired, or never there); `vultrino approvals list` shows the waiting ones"
                )
            if approve and by_key is not None and item.key_id == by_key:
                raise _own_call(item.request.agent)
            item.outcome = "granted" if approve else "declined"
            item.decided_by = by
            item.done.set()
        if self._on_decided is not None:
            self._on_decided(item)
        return item

    def _decide_shared(
        self, table: ApprovalTable, approval_id: str, approve: bool, by: str, by_key: str | None
    ) -> Waiting:
        decision = "granted" if approve else "declined"

        def check(row: dict[str, Any]) -> bytes:
            if approve and by_key is not None and row["key_id"] == by_key:
                raise _own_call(row["agent"] or "")
            assert self._seal is not None
            held = _request(row)
            return self._seal.sign(_decision_message(row["id"], decision, by, held, row["key_id"]))

        found = table.decide(approval_id, decision, by, check)
        if found is None:
            raise ApprovalNotFoundError(
                f"no call waits for approval under id {approval_id[:16]!r} (expired and "
                "cleared, or never there); `vultrino approvals list` shows the waiting ones"
            )
        row, won = found
        if not won:
            stood = row["decision"]
            if stood in ("granted", "declined"):
                verb = "approved" if stood == "granted" else "denied"
                why = f"was already {verb} by {row['decided_by'] or 'someone'}"
            elif stood == "unavailable":
                why = "was already refused (its server stopped)"
            else:
                why = "expired before anyone decided"
            raise ApprovalNotFoundError(
                f"the call {approval_id!r} {why}; nothing was changed "
                "(`vultrino approvals list` shows the waiting ones)"
            )
        item = Waiting(
            id=row["id"],
            request=_request(row),
            key=row["key_name"],
            key_id=row["key_id"],
            created_at=row["created_at"],
            deadline=0.0,
            outcome=_OUTCOMES[row["decision"]],
            decided_by=by,
        )
        self.notice(item.id)  # the call may wait right here: no need to wait for the NOTIFY
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


def _own_call(agent: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        "a key cannot approve a call made with itself; ask another person",
        agent=agent,
        verb="admin",
    )


@dataclass(frozen=True)
class Seal:
    """How a shared inbox signs a person's decision (``sign(message) -> signature``) and
    checks one (``check(message, signature) -> bool``): with the store's key, which every
    replica holds and the database does not."""

    sign: Callable[[bytes], bytes]
    check: Callable[[bytes, bytes], bool]


def _decision_message(
    approval_id: str, decision: str, by: str, request: ApprovalRequest, key_id: str | None
) -> bytes:
    """What a decision's signature covers: the decision and the whole call as it was held."""
    r = request
    fields = [approval_id, decision, by, r.agent, key_id, r.plugin, r.action, r.alias, r.tool]
    return json.dumps([*fields, r.summary], ensure_ascii=False).encode()


def _request(row: dict[str, Any]) -> ApprovalRequest:
    return ApprovalRequest(
        agent=row["agent"] or "",
        plugin=row["plugin"],
        action=row["action"],
        alias=row["alias"],
        tool=row["tool"],
        summary=row["summary"],
    )


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A shared table's row as :meth:`Waiting.to_dict` shows a waiting call."""
    request = _request(row)
    return {
        "id": row["id"],
        "agent": row["agent"],
        "key": row["key_name"],
        "plugin": row["plugin"],
        "action": row["action"],
        "credential": row["alias"],
        "tool": row["tool"],
        "summary": row["summary"],
        "message": request.message(),
        "created_at": row["created_at"],
        "expires_in_s": round(float(row["expires_in_s"]), 1),
    }
