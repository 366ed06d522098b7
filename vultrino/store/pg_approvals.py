"""Approvals every replica shares, in the store's PostgreSQL database (docs/scaling.md).

A call held for a person's approval on one ``vultrino serve`` replica is one row of
``vultrino_approvals``, so a person can decide it on any replica:

``vultrino_approvals``
    ``id`` (the inbox's id), what the inbox shows of the call and nothing else (``agent``,
    ``key_name``, ``key_id``, ``plugin``, ``action``, ``alias``, ``tool``, ``summary``: the
    same secret-free text the inbox shows; never the call's parameters as given, never a
    secret), ``created_at`` and ``expires_at`` (the database's clock), and once decided
    ``decision`` (``granted``, ``declined``, ``expired`` or ``unavailable``), ``decided_by``,
    ``decided_at`` and ``sig``, the deciding replica's signature of a person's decision
    (the inbox signs it with the store's key and the waiting replica checks it, so a row
    written by anyone without that key approves nothing).

A decision is one ``UPDATE … WHERE decision IS NULL``: of two people deciding at once, or a
person and the call's own deadline, exactly one wins, and the others are told what stood.
The winning transaction sends ``NOTIFY vultrino_approvals, '<id>'``; each table LISTENs on a
connection of its own and hands the id to its ``on_notice`` callback, and a waiting call also
re-reads its row every :data:`POLL_S` (a notification lost while the listener reconnected
cannot hold it past its deadline). Knows nothing of approvals' meaning: the server's inbox
(:mod:`vultrino.server.inbox`) does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool

from vultrino.store.postgres import (
    CONNECT_TIMEOUT_S,
    POOL_WAIT_S,
    read_once_more,
    redact_url,
)

__all__ = ["APPROVALS_CHANNEL", "POLL_S", "ApprovalTable"]

APPROVALS_CHANNEL = "vultrino_approvals"
POLL_S = 1.0  # a waiting call re-reads its row this often (a lost NOTIFY)
KEEP_DECIDED = "1 day"  # decided and expired rows are kept this long (a late second decision)
_SWEEP_EVERY_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vultrino_approvals (
    id text PRIMARY KEY,
    agent text,
    key_name text,
    key_id text,
    plugin text NOT NULL,
    action text NOT NULL,
    alias text,
    tool text,
    summary text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    decision text CHECK (decision IN ('granted', 'declined', 'expired', 'unavailable')),
    decided_by text,
    decided_at timestamptz,
    sig bytea
);
CREATE INDEX IF NOT EXISTS vultrino_approvals_waiting
    ON vultrino_approvals (expires_at) WHERE decision IS NULL;
"""

_SHOWN = ("agent", "key_name", "key_id", "plugin", "action", "alias", "tool", "summary")
_COLUMNS = (
    "id, agent, key_name, key_id, plugin, action, alias, tool, summary, "
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "greatest(extract(epoch FROM expires_at - now()), 0)::float8, "
    "decision, decided_by, expires_at > now()"
)
_NAMES = (
    "id",
    *_SHOWN,
    "created_at",
    "expires_in_s",
    "decision",
    "decided_by",
    "open",
)


def _row(values: Any) -> dict[str, Any]:
    return dict(zip(_NAMES, values, strict=True))


class ApprovalTable:
    """The shared approvals of the database at ``url``: a small pool of its own, and a
    listener thread that calls ``on_notice(id)`` for every decision announced."""

    def __init__(self, url: str, on_notice: Callable[[str], None] | None = None) -> None:
        self._url = url
        self._where = redact_url(url)
        self.on_notice = on_notice
        self._pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=4,
            timeout=POOL_WAIT_S,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            open=False,
            name="vultrino-approvals",
        )
        self._pool.open(wait=False)
        self._closed = threading.Event()
        self._swept = 0.0
        self._run("preparing the approvals table", self._create)
        self._listener = threading.Thread(
            target=self._listen, name="vultrino-approvals", daemon=True
        )
        self._listener.start()

    @staticmethod
    def _create(conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            # replicas starting at once must not race to create the same table
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('vultrino_approvals'))")
            conn.execute(_SCHEMA)

    def _run(self, doing: str, fn: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """``fn`` on a pooled connection, psycopg's errors mapped to the store's
        (StoreUnavailableError when the database cannot be reached). A connection the
        database dropped while it sat in the pool is replaced once."""
        return read_once_more(self._pool, self._where, doing, fn)

    # -- a waiting call's side --------------------------------------------------------------

    def hold(self, approval_id: str, shown: dict[str, Any], wait_s: float) -> None:
        """Put a call up for decision for ``wait_s`` seconds; ``shown`` holds :data:`_SHOWN`.
        Also drops rows decided or expired more than :data:`KEEP_DECIDED` ago (at most once
        a minute)."""
        values = [shown.get(name) for name in _SHOWN]
        sweep = time.monotonic() - self._swept >= _SWEEP_EVERY_S

        def insert(conn: psycopg.Connection[Any]) -> None:
            if sweep:
                conn.execute(
                    "DELETE FROM vultrino_approvals WHERE expires_at < now() - %s::interval",
                    (KEEP_DECIDED,),
                )
            conn.execute(
                "INSERT INTO vultrino_approvals (id, agent, key_name, key_id, plugin, action, "
                "alias, tool, summary, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "now() + make_interval(secs => %s))",
                (approval_id, *values, wait_s),
            )

        self._run("holding a call for approval", insert)
        if sweep:
            self._swept = time.monotonic()

    def decision(self, approval_id: str) -> tuple[str, str | None, bytes | None] | None:
        """The decision on ``approval_id``, who made it and its signature; None while it
        waits."""
        row = self._run(
            "reading an approval",
            lambda c: c.execute(
                "SELECT decision, decided_by, sig FROM vultrino_approvals WHERE id = %s",
                (approval_id,),
            ).fetchone(),
        )
        if row is None or row[0] is None:
            return None
        return str(row[0]), row[1], None if row[2] is None else bytes(row[2])

    def settle(self, approval_id: str, outcome: str) -> tuple[str, str | None, bytes | None]:
        """End the wait with ``outcome`` (``expired``, ``unavailable``) unless a person
        decided first: the decision that stands, who made it and its signature."""

        def end(conn: psycopg.Connection[Any]) -> Any:
            conn.execute(
                "UPDATE vultrino_approvals SET decision = %s, decided_at = now() "
                "WHERE id = %s AND decision IS NULL",
                (outcome, approval_id),
            )
            return conn.execute(
                "SELECT decision, decided_by, sig FROM vultrino_approvals WHERE id = %s",
                (approval_id,),
            ).fetchone()

        row = self._run("ending a wait for approval", end)
        if row is None or row[0] is None:
            return outcome, None, None
        return str(row[0]), row[1], None if row[2] is None else bytes(row[2])

    # -- a person's side --------------------------------------------------------------------

    def pending(self) -> list[dict[str, Any]]:
        """Every call waiting for a decision, on any replica, the soonest to expire first."""
        rows = self._run(
            "listing the calls waiting for approval",
            lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM vultrino_approvals "  # noqa: S608 - a constant
                "WHERE decision IS NULL AND expires_at > now() ORDER BY expires_at, id"
            ).fetchall(),
        )
        return [_row(r) for r in rows]

    def decide(
        self,
        approval_id: str,
        outcome: str,
        by: str,
        check: Callable[[dict[str, Any]], bytes],
    ) -> tuple[dict[str, Any], bool] | None:
        """Decide ``approval_id`` (``granted`` or ``declined``) as ``by``, after ``check(row)``
        (which raises to refuse, and nothing is changed, or returns the decision's
        signature). The row and whether this decision is the one that stands (False: it was
        decided, or it expired, before); None when no such call was ever held."""

        def apply(conn: psycopg.Connection[Any]) -> tuple[dict[str, Any], bool] | None:
            with conn.transaction():
                got = conn.execute(
                    f"SELECT {_COLUMNS} FROM vultrino_approvals "  # noqa: S608 - a constant
                    "WHERE id = %s FOR UPDATE",
                    (approval_id,),
                ).fetchone()
                if got is None:
                    return None
                row = _row(got)
                if row["decision"] is not None or not row["open"]:
                    return row, False
                sig = check(row)
                conn.execute(
                    "UPDATE vultrino_approvals SET decision = %s, decided_by = %s, "
                    "decided_at = now(), sig = %s WHERE id = %s",
                    (outcome, by, sig, approval_id),
                )
                conn.execute("SELECT pg_notify(%s, %s)", (APPROVALS_CHANNEL, approval_id))
                row.update(decision=outcome, decided_by=by)
                return row, True

        result: tuple[dict[str, Any], bool] | None = self._run("deciding an approval", apply)
        return result

    # -- the listener -----------------------------------------------------------------------

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                with psycopg.connect(
                    self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                ) as conn:
                    conn.execute(f"LISTEN {APPROVALS_CHANNEL}")
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=POLL_S):
                            if self.on_notice is not None:
                                self.on_notice(note.payload)
            except psycopg.Error:
                self._closed.wait(0.5)  # the database is away: try again (waiters poll)

    def close(self) -> None:
        """Stop the listener and close the pool (idempotent)."""
        self._closed.set()
        with contextlib.suppress(psycopg.Error, psycopg_pool.PoolTimeout):
            self._pool.close(timeout=1.0)

    def __repr__(self) -> str:
        return f"<ApprovalTable {self._where!r}>"
