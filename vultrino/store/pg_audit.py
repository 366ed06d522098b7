"""The audit log in the store's PostgreSQL database: one append-only table every replica
writes and reads (docs/scaling.md).

``vultrino_audit``
    one row per record: ``seq`` (1, 2, 3, … across every replica, in commit order), ``at``
    (the database's clock), ``agent``, ``alias`` and ``outcome`` (indexed, for the ``audit``
    filters), ``rid`` (a random id the writer gives the record, so a write sent again after
    a broken connection is never recorded twice) and ``line``, the record's exact JSON text
    as the file log would hold it, hash chain included (``seq`` and ``prev``, the SHA-256 of
    the previous line and its newline).
    A trigger refuses every ``UPDATE``, ``DELETE`` and ``TRUNCATE``: rows are only added.
``vultrino_audit_head``
    one row: the last ``seq`` and the hash of its line.

A record is one transaction: it locks the head row and reads the database's clock, numbers,
chains and signs the line (``sig``, ``key``: an Ed25519 signature of the line by the store's
audit key and its public half, when the writer holds the unlocked store), moves the head and
inserts the row, and commits before the call that wrote it returns. Writers on every
replica are therefore serialised on the head row, so ``seq`` order is commit order: a
reader that has seen record N has seen every record before it, which is what lets ``audit
--follow`` read ``WHERE seq > N`` on any replica. Records never hold a secret (the pipeline
writes the same fields as to the file log). Reading needs only the database, not the store's
password.
"""

# ruff: noqa: S608 - the SQL built here joins constant conditions; every value is a parameter

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import psycopg
import psycopg_pool

from vultrino.audit import Filter, fields_text, row_message
from vultrino.errors import ConfigError
from vultrino.store.postgres import (
    CONNECT_TIMEOUT_S,
    POOL_WAIT_S,
    STATEMENT_WAIT_S,
    PostgresStore,
    guarded,
    redact_url,
)

__all__ = ["AuditTable"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vultrino_audit_head (
    id smallint PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    last text NOT NULL
);
INSERT INTO vultrino_audit_head (id, seq, last) VALUES (1, 0, repeat('0', 64))
    ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS vultrino_audit (
    seq bigint PRIMARY KEY,
    at timestamptz NOT NULL,
    agent text,
    alias text,
    outcome text,
    line text NOT NULL,
    rid bytea UNIQUE
);
ALTER TABLE vultrino_audit ADD COLUMN IF NOT EXISTS sig bytea;
ALTER TABLE vultrino_audit ADD COLUMN IF NOT EXISTS key bytea;
CREATE INDEX IF NOT EXISTS vultrino_audit_agent ON vultrino_audit (agent, seq);
CREATE INDEX IF NOT EXISTS vultrino_audit_alias ON vultrino_audit (alias, seq);
CREATE INDEX IF NOT EXISTS vultrino_audit_outcome ON vultrino_audit (outcome, seq);
CREATE INDEX IF NOT EXISTS vultrino_audit_at ON vultrino_audit (at);
CREATE OR REPLACE FUNCTION vultrino_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vultrino_audit is append-only: % refused', TG_OP;
END $$;
CREATE OR REPLACE TRIGGER vultrino_audit_append_only BEFORE UPDATE OR DELETE ON vultrino_audit
    FOR EACH ROW EXECUTE FUNCTION vultrino_audit_append_only();
CREATE OR REPLACE TRIGGER vultrino_audit_no_truncate BEFORE TRUNCATE ON vultrino_audit
    FOR EACH STATEMENT EXECUTE FUNCTION vultrino_audit_append_only();
"""

# Lock the head and read the database's clock after the lock (so ``at`` follows ``seq``);
# the writer then numbers, chains and signs the line and moves the head in one statement,
# both in one transaction.
_LOCK = "SELECT seq, last, clock_timestamp() FROM vultrino_audit_head WHERE id = 1 FOR UPDATE"

_APPEND = """
WITH u AS (UPDATE vultrino_audit_head SET seq = %(seq)s, last = %(last)s WHERE id = 1)
INSERT INTO vultrino_audit (seq, at, agent, alias, outcome, line, rid, sig, key)
SELECT %(seq)s, %(at)s, j->>'agent', j->>'alias', j->>'outcome', %(line)s, %(rid)s,
    %(sig)s, %(key)s
FROM (SELECT %(doc)s::jsonb AS j) AS parsed
"""

#: Signs a row's line: the message to (signature, public key), or None when no key is at hand.
RowSigner = Callable[[bytes], "tuple[bytes, bytes] | None"]


def _line(fields: str, seq: int, last: str, at: datetime) -> str:
    """The record's line, exactly as the file log would hold it (chain fields last)."""
    utc = at.astimezone(timezone.utc)
    ts = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+00:00"
    return f'{{"ts":"{ts}"{fields},"seq":{seq},"prev":"{last}"}}'


_WRITTEN = "SELECT 1 FROM vultrino_audit WHERE rid = %(rid)s"

FOLLOW_POLL_S = 0.2


def _where(match: Filter, args: list[Any]) -> str:
    """The SQL condition of ``match`` (its values appended to ``args``)."""
    parts = []
    if match.agent is not None:
        if match.agent == "-":
            parts.append("agent IS NULL")
        else:
            parts.append("agent = %s")
            args.append(match.agent)
    if match.alias is not None:
        parts.append("alias = %s")
        args.append(match.alias)
    if match.outcome is not None:
        parts.append("outcome = %s")
        args.append(match.outcome)
    if match.cutoff is not None:
        parts.append("at >= %s")
        args.append(match.cutoff)
    return " AND ".join(parts) if parts else "true"


def _records(rows: list[Any]) -> list[dict[str, Any]]:
    import json

    return [json.loads(row[0]) for row in rows]


class AuditTable:
    """The audit log of the database at ``url``: what :class:`vultrino.audit.AuditLog` does
    for a file (``append``, ``write``, ``write_text``, ``checkpoint``, ``close``), and the
    queries (``query_from``, ``tail``, ``follow``, ``lines``). Connects on first use."""

    def __init__(self, url: str, signer: RowSigner | None = None) -> None:
        self._url = url
        self._signer = signer
        self.location = redact_url(url)
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._lock = threading.Lock()

    def _connected(self) -> psycopg_pool.ConnectionPool[Any]:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                pool = psycopg_pool.ConnectionPool(
                    self._url,
                    min_size=1,
                    max_size=8,
                    timeout=POOL_WAIT_S,
                    kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
                    open=False,
                    name="vultrino-audit",
                )
                pool.open(wait=False)
                try:
                    self._run_on(
                        pool,
                        "preparing the audit table",
                        lambda c, _: _create(c),
                        wait=STATEMENT_WAIT_S,
                    )
                except BaseException:
                    pool.close()
                    raise
                self._pool = pool
            return self._pool

    def _run_on(
        self,
        pool: psycopg_pool.ConnectionPool[Any],
        doing: str,
        fn: Callable[[psycopg.Connection[Any], bool], Any],
        *,
        wait: float | None = None,
    ) -> Any:
        """``fn(conn, again)`` on a pooled connection, psycopg's errors as the store's
        (StoreUnavailableError when the database cannot be reached, or has not answered in
        ``wait`` seconds: None for reads of the whole log, which may take long). A connection
        the database dropped while it sat in the pool (a restart) makes the pool check all
        its idle ones, and ``fn`` runs once more on a sound one with ``again`` True."""
        with PostgresStore._mapped(self.location, doing):
            for again in (False, True):
                with pool.connection() as conn:
                    try:
                        if wait is None:
                            return fn(conn, again)
                        with guarded(conn, wait):
                            return fn(conn, again)
                    except psycopg.OperationalError:
                        if again or not conn.broken:
                            raise
                pool.check()
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(
        self,
        doing: str,
        fn: Callable[[psycopg.Connection[Any]], Any],
        *,
        wait: float | None = STATEMENT_WAIT_S,
    ) -> Any:
        return self._run_on(self._connected(), doing, lambda conn, _again: fn(conn), wait=wait)

    # -- writing ----------------------------------------------------------------------------

    def append(self, **record: Any) -> None:
        """Append one record, committed before this returns."""
        self.write(record)

    def write(self, record: dict[str, Any]) -> None:
        self.write_text(fields_text(record))

    def write_text(self, fields: str) -> None:
        """Append a record whose fields are text made by :func:`vultrino.audit.fields_text`:
        committed in the database before this returns (StoreUnavailableError if it cannot
        be)."""
        params = {"fields": fields, "rid": os.urandom(16)}

        def append(conn: psycopg.Connection[Any], again: bool) -> None:
            # Sent again after a broken connection: the first try may have committed before
            # the connection broke; its id says whether it did, so no record is written twice.
            if again and conn.execute(_WRITTEN, params).fetchone() is not None:
                return
            with conn.transaction():
                head = conn.execute(_LOCK).fetchone()
                assert head is not None  # the schema inserts the one head row
                seq = int(head[0]) + 1
                line = _line(fields, seq, str(head[1]), head[2])
                signed = self._signer(row_message(line)) if self._signer else None
                conn.execute(
                    _APPEND,
                    {
                        "seq": seq,
                        "at": head[2],
                        "line": line,
                        "doc": line,  # a parameter of its own: ``line`` must stay text
                        "last": hashlib.sha256(line.encode() + b"\n").hexdigest(),
                        "rid": params["rid"],
                        "sig": signed[0] if signed else None,
                        "key": signed[1] if signed else None,
                    },
                )

        self._run_on(self._connected(), "writing an audit record", append, wait=STATEMENT_WAIT_S)

    def checkpoint(self) -> None:
        """Nothing to sign: every row is signed as it is written (see the docstring)."""

    def close(self) -> None:
        """Close the pool (idempotent); the next record opens it again."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(psycopg.Error, psycopg_pool.PoolTimeout):
                pool.close(timeout=1.0)

    # -- reading ----------------------------------------------------------------------------

    def query_from(
        self, match: Filter, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The matching records, oldest first (the newest ``limit`` of them), and the last
        ``seq`` read, where :meth:`follow` goes on."""
        if limit is not None and limit < 0:
            raise ConfigError("the limit must not be negative")
        args: list[Any] = []
        cond = _where(match, args)

        def read(conn: psycopg.Connection[Any]) -> tuple[list[Any], int]:
            with conn.transaction():  # one snapshot: the rows and the head agree
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                row = conn.execute("SELECT seq FROM vultrino_audit_head").fetchone()
                if limit is None:
                    sql = f"SELECT line FROM vultrino_audit WHERE {cond} ORDER BY seq"
                    rows = conn.execute(sql, args).fetchall()  # type: ignore[arg-type]
                else:
                    sql = (
                        "SELECT line FROM (SELECT seq, line FROM vultrino_audit "
                        f"WHERE {cond} ORDER BY seq DESC LIMIT %s) AS newest ORDER BY seq"
                    )
                    rows = conn.execute(sql, [*args, limit]).fetchall()  # type: ignore[arg-type]
            return rows, int(row[0]) if row else 0

        # a bounded page is a short read; the whole log may take long
        rows, last = self._run(
            "reading the audit log", read, wait=None if limit is None else STATEMENT_WAIT_S
        )
        return _records(rows), last

    def tail(
        self, match: Filter, limit: int, *, skip: int = 0
    ) -> tuple[list[dict[str, Any]], bool]:
        """The newest ``limit`` matches after skipping the ``skip`` newest, newest first, and
        whether older matches remain (like :func:`vultrino.audit.tail`)."""
        if limit < 0 or skip < 0:
            raise ConfigError("the limit and the offset must not be negative")
        args: list[Any] = []
        cond = _where(match, args)
        sql = f"SELECT line FROM vultrino_audit WHERE {cond} ORDER BY seq DESC LIMIT %s OFFSET %s"
        rows = self._run(
            "reading the audit log",
            lambda c: c.execute(sql, [*args, limit + 1, skip]).fetchall(),  # type: ignore[arg-type]
        )
        return _records(rows[:limit]), len(rows) > limit

    def follow(
        self, match: Filter, after: int, *, interval: float = FOLLOW_POLL_S
    ) -> Iterator[dict[str, Any]]:
        """The matching records written after record ``after`` by any replica, as they are
        committed (polls every ``interval`` seconds; runs until the caller stops)."""
        args: list[Any] = []
        cond = _where(match, args)
        sql = (
            "SELECT line, seq FROM vultrino_audit WHERE seq > %s AND "
            f"{cond} ORDER BY seq LIMIT 1000"
        )
        head = "SELECT seq FROM vultrino_audit_head"
        while True:

            def read(conn: psycopg.Connection[Any], after: int = after) -> tuple[list[Any], int]:
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    top = conn.execute(head).fetchone()
                    rows = conn.execute(sql, [after, *args]).fetchall()  # type: ignore[arg-type]
                return rows, int(top[0]) if top else after

            rows, top = self._run("reading the audit log", read)
            yield from _records([(r[0],) for r in rows])
            after = int(rows[-1][1]) if len(rows) == 1000 else max(after, top)
            if len(rows) < 1000:
                time.sleep(interval)

    def signed_lines(self) -> list[tuple[str, bytes | None, bytes | None]]:
        """Every row's (line, signature, public key) in ``seq`` order (None, None: a row
        written unsigned)."""
        rows = self._run(
            "reading the audit log",
            lambda c: c.execute(
                "SELECT line, sig, key FROM vultrino_audit ORDER BY seq"
            ).fetchall(),
            wait=None,
        )
        return [
            (r[0], None if r[1] is None else bytes(r[1]), None if r[2] is None else bytes(r[2]))
            for r in rows
        ]

    def lines(self) -> bytes:
        """Every record's line, newline-terminated, in ``seq`` order: the log as a file would
        hold it (what ``audit verify`` checks)."""
        rows = self._run(
            "reading the audit log",
            lambda c: c.execute("SELECT line FROM vultrino_audit ORDER BY seq").fetchall(),
            wait=None,
        )
        return "".join(row[0] + "\n" for row in rows).encode()

    def __repr__(self) -> str:
        return f"<AuditTable {self.location!r}>"


def _create(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        # replicas starting at once must not race to create the same objects
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('vultrino_audit'))")
        conn.execute(_SCHEMA)
