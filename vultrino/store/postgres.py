"""The sealed store in PostgreSQL: several processes (``vultrino serve`` replicas) on one store.

The same records, rules and secretbox scheme as ``credentials.enc`` (it subclasses
:class:`~vultrino.store.credentials.CredentialStore` and replaces only where the bytes live),
one sealed row per credential, agent profile or role, API key record and audit signing key:

``vultrino_store``
    one row: ``seal``, a 58-byte store header (magic, format, Argon2id parameters, salt, a
    nonce, new on every write) and the secretbox of a copy of that header and of a digest of
    every record row (ids and sealed bytes) under the password-derived key (a wrong password
    fails to open it; a row deleted, added or put back by someone without it fails the
    digest), and ``revision``, bumped by every write.
``vultrino_records``
    ``id``, a keyed BLAKE2b of the record's kind and name (so names stay sealed too);
    ``sealed``, a header and the secretbox of the record, its kind and its name; ``revision``,
    the store revision that wrote it.
``vultrino_rate``
    the shared rate-limit buckets, by a keyed BLAKE2b of the bucket's name (a subkey of the
    password-derived key; a re-key empties the table, so every bucket starts full).

The shared plugins' rows (:mod:`vultrino.store.pg_plugins`) are not secret, so they are not
sealed, but each carries a MAC under a subkey of the same password-derived key
(:meth:`PostgresStore.plugin_mac`): a row that someone wrote to the database without the
password is refused, and a re-key re-MACs them in the transaction that re-seals the rows.

The database therefore holds ciphertext and non-secret numbers only. A write is one
transaction that bumps the revision only if it is still the one the write read (optimistic
concurrency: a writer that lost the race re-reads and applies its change again, so no update
is lost) and then sends ``NOTIFY vultrino_store``; every open store LISTENs on its own
connection, so a change reaches every process in milliseconds, and reads stay free of round
trips while no notification came. Only this module imports psycopg (docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import conninfo as _conninfo

from vultrino._msgpack import DecodeError, packb, unpackb
from vultrino.errors import (
    StoreCorruptError,
    StoreError,
    StoreExistsError,
    StoreLockedError,
    StoreNotInitializedError,
    StoreUnavailableError,
    WrongPasswordError,
)
from vultrino.store import _sealing
from vultrino.store._sealing import Header, KdfParams, StoreKey, Unauthentic
from vultrino.store.credentials import (
    Credential,
    CredentialStore,
    VersionRetention,
    _encode_record,
    _password_bytes,
    decode_all,
    document_format,
)

__all__ = [
    "CHANNEL",
    "PLUGIN_MAC_FIELDS",
    "STATEMENT_WAIT_S",
    "PostgresStore",
    "guarded",
    "read_once_more",
    "redact_url",
]

CHANNEL = "vultrino_store"
CONNECT_TIMEOUT_S = 5  # how long opening a connection may take before the database is "down"
POOL_WAIT_S = 2.0  # how long a call waits for a pooled connection (a database down: fail)
WRITE_RETRIES = 64  # optimistic writes lost to other writers before giving up
LISTEN_POLL_S = 1.0  # the listener re-reads the revision this often (a missed NOTIFY)
STATEMENT_WAIT_S = 5.0  # how long a call's statement may go unanswered before it fails
WRITE_WAIT_S = 30.0  # a store write's transaction (it may wait for another writer's lock)
_WATCH_TICK_S = 0.25  # how often the watchdog looks for overdue statements

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vultrino_store (
    id smallint PRIMARY KEY CHECK (id = 1),
    seal bytea NOT NULL,
    revision bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS vultrino_records (
    id bytea PRIMARY KEY,
    sealed bytea NOT NULL,
    revision bigint NOT NULL
);
CREATE UNLOGGED TABLE IF NOT EXISTS vultrino_rate (
    bucket bytea PRIMARY KEY,
    tokens double precision NOT NULL,
    at double precision NOT NULL,
    count integer NOT NULL,
    period double precision NOT NULL,
    granted boolean NOT NULL
);
"""

# One statement, so one row lock: refill the bucket by the time since its last use (the
# database's clock, which every replica shares), take a token when there is one.
_REFILLED = (
    "CASE WHEN r.count <> excluded.count OR r.period <> excluded.period "
    "THEN excluded.count::float8 ELSE least(excluded.count::float8, r.tokens + "
    "greatest(0, excluded.at - r.at) * excluded.count / excluded.period) END"
)
_TAKE = f"""
INSERT INTO vultrino_rate AS r (bucket, tokens, at, count, period, granted)
VALUES (%s, %s - 1, extract(epoch FROM clock_timestamp()), %s, %s, true)
ON CONFLICT (bucket) DO UPDATE SET
    tokens = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END,
    at = excluded.at, count = excluded.count, period = excluded.period,
    granted = {_REFILLED} >= 1
RETURNING granted, tokens
"""  # noqa: S608 - only the constant above is interpolated

_KINDS = ("credential", "agent", "key", "audit_key", "admin")
_T = TypeVar("_T")


def redact_url(url: str) -> str:
    """``url`` fit to print: user, host, port and database, never a password."""
    try:
        parts = _conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://<unparseable URL>"
    user = parts.get("user")
    host = parts.get("host") or "localhost"
    port = parts.get("port")
    db = parts.get("dbname") or ""
    return f"postgresql://{f'{user}@' if user else ''}{host}{f':{port}' if port else ''}/{db}"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _connect_reason(exc: BaseException, url: str) -> str:
    """The driver's reason a connection to ``url`` failed, fit to print: libpq quotes the
    part of a URL it could not parse, which may be all of it, password included, so the
    quoted parts of a parse error are left out."""
    text = _short(exc)
    try:
        _conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        text = re.sub(r'"[^"]*"', "…", text)
        if '"' in text:  # an unbalanced quote: drop from it on
            text = text[: text.index('"')].rstrip(" :") + " …"
        return f"{text}; the URL is malformed"
    return text.replace(url, redact_url(url))


class _Overran(Exception):  # noqa: N818 - mapped to StoreUnavailableError by _mapped
    """A guarded statement got no answer in its wait, and its connection was cut."""


class _Watchdog:
    """Bounds how long a statement waits for the database. psycopg waits on the socket with
    no limit, so a database that keeps a connection open but answers nothing (a hung server,
    a network that drops packets) would hold the call for ever; one thread cuts (shuts down)
    the socket of a connection whose guarded block overran its wait, psycopg then fails the
    statement, and the pool drops the connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, psycopg.Connection[Any]]] = {}
        self._fired: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def guard(self, conn: psycopg.Connection[Any], seconds: float) -> Iterator[None]:
        token = next(self._tokens)
        with self._lock:
            self._armed[token] = (time.monotonic() + seconds, conn)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="vultrino-pg-watchdog", daemon=True
                )
                self._thread.start()
        try:
            yield
        except psycopg.Error:
            if token in self._fired:
                raise _Overran(seconds) from None
            raise
        finally:
            with self._lock:  # once disarmed, the connection is never cut (the pool reuses it)
                self._armed.pop(token, None)
                fired = token in self._fired
                self._fired.discard(token)
        if fired:
            raise _Overran(seconds)

    def _watch(self) -> None:
        while True:
            time.sleep(_WATCH_TICK_S)
            now = time.monotonic()
            with self._lock:
                for token, (deadline, conn) in self._armed.items():
                    if deadline <= now and token not in self._fired:
                        self._fired.add(token)
                        _cut(conn)


def _cut(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down under psycopg (which then sees it closed)."""
    with contextlib.suppress(OSError, psycopg.Error):
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


_WATCHDOG = _Watchdog()


def guarded(conn: psycopg.Connection[Any], seconds: float = STATEMENT_WAIT_S) -> Any:
    """A context manager: the statements run in it fail (StoreUnavailableError, through
    :meth:`PostgresStore._mapped`) when the database has not answered them in ``seconds``."""
    return _WATCHDOG.guard(conn, seconds)


class _Conflict(Exception):  # noqa: N818 - control flow inside a write, never raised out
    """Another process wrote first: re-read and apply the change again."""


class _Rows:
    """The plaintext of each row as last read or written, by row id: what a write diffs."""

    def __init__(self) -> None:
        self.plain: dict[bytes, bytes] = {}
        self.hashes: dict[bytes, bytes] = {}  # row id -> SHA-256 of its sealed bytes


def _row_key(key: bytearray) -> bytes:
    return hashlib.blake2b(b"row ids", key=bytes(key), person=b"vultrino-rowid").digest()


def _row_id(row_key: bytes, kind: str, name: str) -> bytes:
    data = kind.encode() + b"\0" + name.encode()
    return hashlib.blake2b(data, key=row_key, digest_size=20, person=b"vultrino-row").digest()


def _plugin_key(key: bytearray) -> bytes:
    """The subkey that authenticates the shared plugins' rows (never the row key's)."""
    return hashlib.blake2b(b"plugin rows", key=bytes(key), person=b"vultrino-plugkey").digest()


#: What a plugin row's MAC covers: everything a replica acts on.
PLUGIN_MAC_FIELDS = ("name", "version", "digest", "files", "metadata")


def _plugin_mac(plugin_key: bytes, row: Mapping[str, Any]) -> bytes:
    """The MAC of one plugin row (its :data:`PLUGIN_MAC_FIELDS`), in one canonical encoding
    (JSON with sorted keys; what the ``jsonb`` columns give back is what was written)."""
    fields = {f: row[f] for f in PLUGIN_MAC_FIELDS}
    data = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.blake2b(data.encode(), key=plugin_key, person=b"vultrino-plugin").digest()


def _rate_key(key: bytearray) -> bytes:
    """The subkey that names the rate-limit buckets (never another use's key)."""
    return hashlib.blake2b(b"rate buckets", key=bytes(key), person=b"vultrino-ratekey").digest()


def _bucket_id(rate_key: bytes, bucket: str) -> bytes:
    """A bucket's row id: keyed, so a bucket's name (an agent's, a credential's) cannot be
    confirmed by hashing a guess, as with the records' ids."""
    return hashlib.blake2b(
        bucket.encode(), key=rate_key, digest_size=20, person=b"vultrino-rate"
    ).digest()


def _rows_digest(hashes: Mapping[bytes, bytes]) -> bytes:
    """The digest of a set of rows (their ids and the SHA-256 of their sealed bytes), which
    the header row seals: a row deleted, added, or put back from an earlier write changes it."""
    h = hashlib.sha256(b"vultrino rows\0")
    for row_id in sorted(hashes):
        h.update(row_id + hashes[row_id])
    return h.digest()


def _check_plaintext(header: Header, rows: bytes) -> bytes:
    return packb({"header": header.raw, "backend": "postgresql", "rows": rows})


def _sealed_rows(plaintext: bytes) -> bytes | None:
    """The rows digest a header row's sealed check holds (None: one written before it held
    one, which the next write adds)."""
    try:
        check = unpackb(plaintext)
    except DecodeError:
        return None
    rows = check.get("rows") if isinstance(check, dict) else None
    return rows if isinstance(rows, bytes) else None


class PostgresStore(CredentialStore):
    """An open store in a PostgreSQL database. Create with :meth:`create`, open with
    :meth:`open`; everything else is :class:`CredentialStore`'s."""

    backend = "postgresql"
    shares_rate_limits = True

    def __init__(
        self,
        url: str,
        pool: psycopg_pool.ConnectionPool[Any],
        *,
        password: bytearray | None,
        key: bytearray,
        header: Header,
        retention: VersionRetention | None,
    ) -> None:
        """Internal: use :meth:`create` or :meth:`open`."""
        self._init_state(
            password=password,
            key=key,
            header=header,
            records={},
            agents=None,
            audit_key=None,
            retention=retention,
            api_keys=None,
        )
        self._url = url
        self._where = redact_url(url)
        self._pool = pool
        self._rows = _Rows()
        self._db_revision = -1  # the store revision our records are (none read yet)
        self._notified = 0  # the newest revision the listener heard of
        self._listening = False  # while False, every read asks the database
        self._closed = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="vultrino-listen", daemon=True)

    # -- constructors ---------------------------------------------------------------------

    @classmethod
    def create(  # type: ignore[override]
        cls,
        url: str,
        password: str,
        kdf: KdfParams | None = None,
        *,
        retention: VersionRetention | None = None,
    ) -> PostgresStore:
        """Create an empty store in the database at ``url`` (its tables are made when
        missing); StoreExistsError if it already holds one."""
        pw = _password_bytes(password, new=True)
        params = kdf if kdf is not None else KdfParams.default()
        salt = _sealing.new_salt()
        key = _sealing.derive_key(bytes(pw), salt, params)
        header = _sealing.new_header(params, salt)
        seal = _sealing.seal_box(key, header, _check_plaintext(header, _rows_digest({})))
        where = redact_url(url)
        pool = cls._pool_for(url)
        try:
            with (
                cls._mapped(where, "creating the store"),
                pool.connection() as conn,
                conn.transaction(),
            ):
                conn.execute(_SCHEMA)
                conn.execute("LOCK TABLE vultrino_store IN EXCLUSIVE MODE")
                taken = conn.execute("SELECT 1 FROM vultrino_store").fetchone()
                rows = conn.execute("SELECT 1 FROM vultrino_records LIMIT 1").fetchone()
                if taken is not None or rows is not None:
                    raise StoreExistsError(
                        f"the database {where} already holds a Vultrino store; use it "
                        "(`vultrino rekey` changes its password) or point "
                        "VULTRINO_STORE_URL at an empty database"
                    )
                conn.execute(
                    "INSERT INTO vultrino_store (id, seal, revision) VALUES (1, %s, 1)",
                    (seal,),
                )
        except BaseException:
            pool.close()
            _sealing.wipe(key)
            raise
        store = cls(url, pool, password=pw, key=key, header=header, retention=retention)
        store._db_revision = 1
        store._start()
        return store

    @classmethod
    def open(  # type: ignore[override]
        cls,
        url: str,
        password: str | None = None,
        *,
        key: StoreKey | None = None,
        retention: VersionRetention | None = None,
    ) -> PostgresStore:
        """Open the store in the database at ``url`` with its password or a derived ``key``
        (an unlock session's), like :meth:`CredentialStore.open`."""
        if key is not None and password is not None:
            raise ValueError("open a store with its password or with a key, not both")
        pw = None if key is not None else _password_bytes(password, new=False)
        where = redact_url(url)
        pool = cls._pool_for(url)
        try:
            seal, _ = cls._read_seal(pool, where)
            header = _sealing.parse_header(seal, where)
            if key is None:
                assert pw is not None
                opened = _sealing.derive_key(bytes(pw), header.salt, header.kdf)
            elif key.binding != header.binding:
                raise WrongPasswordError(
                    f"cannot open the store in {where} with the unlock session's key: it was "
                    "re-keyed since the session began; run `vultrino unlock` again"
                )
            else:
                opened = bytearray(key.key)
            try:
                _sealing.open_box(opened, header, seal)
            except Unauthentic:
                _sealing.wipe(opened)
                raise WrongPasswordError(
                    f"cannot open the store in {where}: wrong password, or its header row was "
                    "modified; check the password (VULTRINO_PASSWORD / VULTRINO_PASSWORD_FILE)"
                ) from None
        except BaseException:
            pool.close()
            _sealing.wipe(pw)
            raise
        store = cls(url, pool, password=pw, key=opened, header=header, retention=retention)
        try:
            store._refresh(force=True)
        except BaseException:
            store.close()
            raise
        store._start()
        return store

    @staticmethod
    def _pool_for(url: str) -> psycopg_pool.ConnectionPool[Any]:
        """A small pool, opened at once: an unreachable database is an error here, at start,
        with the driver's reason."""
        where = redact_url(url)
        try:  # the driver's own words when the database cannot be reached
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot reach the PostgreSQL store at {where} ({_connect_reason(exc, url)}); "
                "check that the "
                "database runs and that VULTRINO_STORE_URL (or [store] url in config.toml) "
                "names it"
            ) from None
        pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=8,
            timeout=POOL_WAIT_S,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            open=False,
            name="vultrino-store",
        )
        pool.open(wait=False)
        return pool

    @staticmethod
    @contextlib.contextmanager
    def _mapped(where: str, doing: str) -> Iterator[None]:
        """psycopg's errors as the store's: the database is unreachable, or refused."""
        try:
            yield
        except _Overran as exc:
            raise StoreUnavailableError(
                f"the PostgreSQL store at {where} did not answer in {exc.args[0]:g} s while "
                f"{doing}; check that the database runs and is reachable (a write may or may "
                "not have been made: look before trying again)"
            ) from None
        except psycopg_pool.PoolTimeout:
            raise StoreUnavailableError(
                f"the PostgreSQL store at {where} did not answer in {POOL_WAIT_S:g} s while "
                f"{doing}; check that the database runs (nothing was changed)"
            ) from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(
                f"lost the PostgreSQL store at {where} while {doing} ({_short(exc)}); "
                "check that the database runs and try again (the change was not made)"
            ) from None
        except psycopg.Error as exc:
            raise StoreError(
                f"the PostgreSQL store at {where} refused {doing} ({_short(exc)}); check the "
                "database user's rights on the vultrino_* tables"
            ) from None

    @classmethod
    def _read_seal(cls, pool: psycopg_pool.ConnectionPool[Any], where: str) -> tuple[bytes, int]:
        with cls._mapped(where, "opening the store"), pool.connection() as conn:
            try:
                row = conn.execute("SELECT seal, revision FROM vultrino_store").fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
        if row is None:
            raise StoreNotInitializedError(
                f"the database {where} holds no Vultrino store; run `vultrino init` with "
                f"VULTRINO_STORE_URL set, or copy one in with `vultrino store migrate --to URL`"
            )
        return bytes(row[0]), int(row[1])

    def _read(self, doing: str, fn: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """``fn`` on a pooled connection. A connection the database dropped while it sat in
        the pool (a restart) is replaced once, so the first call after an outage that has
        ended does not fail; a database that is still down fails at once, with
        StoreUnavailableError. Writes never come here: one whose connection broke may have
        committed, so it fails instead of running twice."""
        return read_once_more(self._pool, self._where, doing, fn)

    def query(self, doing: str, fn: Callable[[Any], _T]) -> _T:
        """``fn(connection)`` for a read by another table's code in this package (the shared
        plugins, :mod:`vultrino.store.pg_plugins`), with the store's error mapping and its
        one retry on a connection a restart broke."""
        self._live_key()
        return self._read(doing, fn)

    def transact(self, doing: str, fn: Callable[[Any], _T]) -> _T:
        """``fn(connection)`` inside one transaction (never retried: it may have committed),
        for another table's code in this package; psycopg's errors mapped as the store's."""
        self._live_key()
        with (
            self._mapped(self._where, doing),
            self._pool.connection() as conn,
            conn.transaction(),
        ):
            return fn(conn)

    # -- the shared plugins' MACs ------------------------------------------------------------

    def plugin_mac(self, row: Mapping[str, Any], *, seal: bytes) -> bytes:
        """The MAC of a plugin row about to be written (its :data:`PLUGIN_MAC_FIELDS`),
        under this store's key. ``seal`` is the header row as the writing transaction locked
        it: when another process re-keyed the store since this one read it, StoreLockedError
        (a MAC under the old key would be refused by every replica; the transaction is rolled
        back)."""
        key = self._live_key()
        header = _sealing.parse_header(seal, self._where)
        if header.salt != self._header.salt or header.kdf != self._header.kdf:
            raise StoreLockedError(
                f"the store in {self._where} was re-keyed by another process while plugin "
                f"{row['name']} was being shared; nothing was changed; run the command again (with "
                "the new password)"
            )
        return _plugin_mac(_plugin_key(key), row)

    def plugin_mac_matches(self, mac: bytes | None, row: Mapping[str, Any]) -> bool:
        """Whether ``mac`` authenticates this plugin row under the store's key (compared in
        constant time). A mismatch first makes sure the key is the current one (another
        process may have re-keyed the store a moment ago)."""
        if mac is None:
            return False
        for attempt in (1, 2):
            want = _plugin_mac(_plugin_key(self._live_key()), row)
            if hmac.compare_digest(bytes(mac), want):
                return True
            if attempt == 1:
                with self._mutex:
                    self._refresh(force=True)
        return False

    def _remac_plugins(self, conn: psycopg.Connection[Any], new_key: bytearray) -> None:
        """Inside a re-key's transaction: MAC every shared plugin row that the old key
        authenticates under the new key. A row it does not authenticate is left as it is, so
        it stays refused (a re-key never vouches for a row no replica wrote)."""
        found = conn.execute("SELECT to_regclass('vultrino_plugins')").fetchone()
        if found is None or found[0] is None:
            return  # no plugin was ever shared through this database
        conn.execute("ALTER TABLE vultrino_plugins ADD COLUMN IF NOT EXISTS mac bytea")
        old, new = _plugin_key(self._live_key()), _plugin_key(new_key)
        updates: list[tuple[bytes, str]] = []
        rows = conn.execute(
            "SELECT name, version, digest, files, metadata, mac FROM vultrino_plugins"
        ).fetchall()
        for *fields, mac in rows:
            row = dict(zip(PLUGIN_MAC_FIELDS, fields, strict=True))
            if mac is None or not hmac.compare_digest(bytes(mac), _plugin_mac(old, row)):
                continue
            updates.append((_plugin_mac(new, row), row["name"]))
        if updates:
            with conn.cursor() as cur:
                cur.executemany("UPDATE vultrino_plugins SET mac = %s WHERE name = %s", updates)

    # -- reading --------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self._where

    @property
    def revision(self) -> int:
        if self._key is not None and self._listening and self._notified <= self._db_revision:
            return self._revision
        with self._mutex:
            self._refresh(force=False)
            return self._revision

    def _refresh(self, *, force: bool) -> None:
        """Pick up other processes' writes: nothing to do while the listener heard of no newer
        revision (unless ``force``); else read the revision, and every row when it moved."""
        key = self._live_key()
        if not force and self._listening and self._notified <= self._db_revision:
            return
        heard = self._notified

        def read(conn: psycopg.Connection[Any]) -> list[Any] | None:
            row = conn.execute("SELECT revision FROM vultrino_store").fetchone()
            if row is None:
                raise StoreNotInitializedError(
                    f"the store in {self._where} was removed; run `vultrino init`"
                )
            if int(row[0]) == self._db_revision:
                return None
            # one statement: the header and the rows of one snapshot
            return conn.execute(
                "SELECT s.seal, s.revision, r.id, r.sealed FROM vultrino_store s "
                "LEFT JOIN vultrino_records r ON true"
            ).fetchall()

        rows = self._read("reading the store", read)
        if rows is None:
            # Unchanged: a notice of a newer revision was not a commit's (anyone who may
            # connect can NOTIFY); forget it, unless another came in meanwhile, so that reads
            # answer from the cache again instead of asking the database every time.
            if self._notified == heard > self._db_revision:
                self._notified = self._db_revision
            return
        if not rows:
            raise StoreNotInitializedError(f"the store in {self._where} was removed")
        seal, revision = bytes(rows[0][0]), int(rows[0][1])
        header = _sealing.parse_header(seal, self._where)
        current = self._header
        same_key = header.salt == current.salt and header.kdf == current.kdf
        if not same_key:
            if self._password is None:
                raise WrongPasswordError(
                    f"the store in {self._where} was re-keyed by another process, and the "
                    "unlock session's key this command opened it with no longer fits; run the "
                    "command again"
                )
            key = _sealing.derive_key(bytes(self._password), header.salt, header.kdf)
        sealed = [(bytes(r[2]), bytes(r[3])) for r in rows if r[2]]
        hashes = {row_id: hashlib.sha256(data).digest() for row_id, data in sealed}
        try:
            check = _sealing.open_box(key, header, seal)
            want = _sealed_rows(check)
            if want is not None and not hmac.compare_digest(want, _rows_digest(hashes)):
                raise StoreCorruptError(
                    f"the store in {self._where} fails its integrity check: rows were changed, "
                    "deleted, added or put back from an earlier copy since a process holding the "
                    "password last wrote it (someone wrote to the database directly); restore "
                    "the database from a backup"
                )
            decoded = self._decode(key, header, sealed)
        except Unauthentic:
            if not same_key:
                _sealing.wipe(key)
                raise WrongPasswordError(
                    f"the store in {self._where} was re-keyed by another process and this "
                    "password no longer opens it; run the command again with the new password"
                ) from None
            raise StoreCorruptError(
                f"the store in {self._where} fails its integrity check although the key is "
                "right: a row was modified or damaged; restore the database from a backup"
            ) from None
        except StoreError:
            if not same_key:
                _sealing.wipe(key)
            raise
        records, agents, audit_key, api_keys, admin_hash, plain = decoded
        if not same_key:
            old, self._key = self._key, key
            _sealing.wipe(old)
        self._header = header
        self._records = records
        self._agents = agents
        self._api_keys = api_keys
        self._audit_key = audit_key
        self._admin_hash = admin_hash
        self._rows.plain = plain
        self._rows.hashes = hashes
        self._db_revision = revision
        self._revision += 1
        self._sorted = None

    def _decode(
        self, key: bytearray, header: Header, rows: list[tuple[bytes, bytes]]
    ) -> tuple[
        dict[str, Credential],
        dict[str, dict[str, Any]],
        bytes | None,
        dict[str, dict[str, Any]],
        str | None,
        dict[bytes, bytes],
    ]:
        """Open every row, check it belongs where it is, and parse them as one document (so
        the file store's checks apply record by record)."""
        row_key = _row_key(key)
        doc: dict[str, Any] = {"header": header.raw, "credentials": [], "agents": []}
        doc["api_keys"] = []
        plain: dict[bytes, bytes] = {}
        for row_id, sealed in rows:
            row_header = _sealing.parse_header(sealed, self._where)
            if row_header.salt != header.salt or row_header.kdf != header.kdf:
                raise StoreCorruptError(
                    f"a row of the store in {self._where} is sealed under another key (left "
                    "over from before a re-key, or copied in); restore the database from a backup"
                )
            opened = _sealing.open_box(key, row_header, sealed)
            try:
                item = unpackb(opened)
            except DecodeError:
                item = None
            kind = item.get("kind") if isinstance(item, dict) else None
            name = item.get("name") if isinstance(item, dict) else None
            if (
                not isinstance(item, dict)
                or kind not in _KINDS
                or not isinstance(name, str)
                or _row_id(row_key, kind, name) != row_id
            ):
                raise StoreCorruptError(
                    f"a row of the store in {self._where} decrypted but is not the record its "
                    "id names (moved or malformed); restore the database from a backup"
                )
            plain[row_id] = packb(item["body"])
            if kind == "credential":
                doc["credentials"].append(item["body"])
            elif kind == "agent":
                doc["agents"].append(item["body"])
            elif kind == "key":
                doc["api_keys"].append(item["body"])
            elif kind == "admin":
                doc["admin_password"] = item["body"]
            else:
                doc["audit_key"] = item["body"]
        for section, field in (("credentials", "alias"), ("agents", "name"), ("api_keys", "id")):
            doc[section].sort(key=lambda rec, f=field: str(rec.get(f, "")))
        records, agents, audit_key, api_keys, admin = decode_all(packb(doc), header, self._where)
        return records, agents, audit_key, api_keys, admin, plain

    # -- writing --------------------------------------------------------------------------

    def _exclusive(self, attempt: Callable[[], _T]) -> _T:
        """Optimistic writes: an attempt that lost the race to another writer runs again on
        what that writer wrote."""
        for _ in range(WRITE_RETRIES):
            try:
                return attempt()
            except _Conflict:
                continue
        raise StoreLockedError(
            f"{WRITE_RETRIES} writes in a row to the store in {self._where} lost the race to "
            "other processes; try again"
        )

    def _write(
        self,
        records: dict[str, Credential],
        params: KdfParams,
        salt: bytes,
        key: bytearray,
        new_password: bytearray | None,
        *,
        agents: dict[str, dict[str, Any]] | None = None,
        api_keys: dict[str, dict[str, Any]] | None = None,
        admin: tuple[str | None] | None = None,
    ) -> None:
        """Seal the rows that changed and write them in one transaction, if the revision is
        still the one read; :class:`_Conflict` if it is not (nothing was written). ``admin``
        (a one-item tuple) replaces the web UI's admin password hash, kept in a row of its own
        sealed like the others (None in it: no admin password)."""
        self._prune(records)
        profiles = self._agents if agents is None else agents
        keys = self._api_keys if api_keys is None else api_keys
        fmt = document_format(profiles, keys)
        rekey = salt != self._header.salt or params != self._header.kdf
        # a new header (a fresh nonce) every write: the header row seals the digest of the
        # rows this write leaves, and a nonce is never used twice under one key
        header = _sealing.new_header(params, salt, fmt)
        row_key = _row_key(key)
        wanted: dict[bytes, tuple[str, str, Any]] = {}
        for alias, cred in records.items():
            wanted[_row_id(row_key, "credential", alias)] = ("credential", alias, cred)
        for name, rec in profiles.items():
            wanted[_row_id(row_key, "agent", name)] = ("agent", name, rec)
        for key_id, rec in keys.items():
            wanted[_row_id(row_key, "key", key_id)] = ("key", key_id, rec)
        if self._audit_key is not None:
            wanted[_row_id(row_key, "audit_key", "")] = ("audit_key", "", self._audit_key)
        admin_hash = self._admin_hash if admin is None else admin[0]
        if admin_hash is not None:
            wanted[_row_id(row_key, "admin", "")] = ("admin", "", admin_hash)
        plain: dict[bytes, bytes] = {}
        changed: list[tuple[bytes, str, str, Any]] = []
        for row_id, (kind, name, value) in wanted.items():
            body = _encode_record(value) if kind == "credential" else value
            plain[row_id] = packb(body)
            if rekey or self._rows.plain.get(row_id) != plain[row_id]:
                changed.append((row_id, kind, name, body))
        removed = [r for r in self._rows.plain if r not in plain]
        sealed_rows = [
            (row_id, self._seal_row(key, header, kind, name, body))
            for row_id, kind, name, body in changed
        ]
        hashes = {r: h for r, h in self._rows.hashes.items() if r in plain and not rekey}
        hashes.update((row_id, hashlib.sha256(data).digest()) for row_id, data in sealed_rows)
        seal = _sealing.seal_box(key, header, _check_plaintext(header, _rows_digest(hashes)))
        with (
            self._mapped(self._where, "writing the store"),
            self._pool.connection() as conn,
            guarded(conn, WRITE_WAIT_S),
            conn.transaction(),
        ):
            cur = conn.execute(
                "UPDATE vultrino_store SET revision = revision + 1, seal = %s "
                "WHERE id = 1 AND revision = %s RETURNING revision",
                (seal, self._db_revision),
            )
            got = cur.fetchone()
            if got is None:
                raise _Conflict
            revision = int(got[0])
            if rekey:
                conn.execute("DELETE FROM vultrino_records")
                conn.execute("DELETE FROM vultrino_rate")  # named under the old key: start full
                self._remac_plugins(conn, key)
            elif removed:
                conn.execute("DELETE FROM vultrino_records WHERE id = ANY(%s)", (removed,))
            if sealed_rows:
                with conn.cursor() as rows_cur:
                    rows_cur.executemany(
                        "INSERT INTO vultrino_records (id, sealed, revision) "
                        "VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                        "sealed = excluded.sealed, revision = excluded.revision",
                        [(row_id, sealed, revision) for row_id, sealed in sealed_rows],
                    )
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(revision)))
        # committed: from here on, our view must match the database
        self._header = header
        self._records = records
        self._agents = profiles
        self._api_keys = keys
        self._admin_hash = admin_hash
        self._rows.plain = plain
        self._rows.hashes = hashes
        self._db_revision = revision
        self._revision += 1
        self._sorted = None
        if new_password is not None:
            old_key, old_pw = self._key, self._password
            self._key, self._password = key, new_password
            _sealing.wipe(old_key)
            _sealing.wipe(old_pw)

    @staticmethod
    def _seal_row(key: bytearray, header: Header, kind: str, name: str, body: Any) -> bytes:
        row_header = _sealing.new_header(header.kdf, header.salt)  # a fresh nonce per row
        return _sealing.seal_box(key, row_header, packb({"kind": kind, "name": name, "body": body}))

    # -- shared rate limits ---------------------------------------------------------------

    def take_token(self, bucket: str, count: int, period: float) -> float:
        """One token from the bucket ``bucket`` that every process on this database shares,
        taken atomically in one statement (refilled on the database's clock)."""
        params = (_bucket_id(_rate_key(self._live_key()), bucket), count, count, period)
        row = self._read("checking a rate limit", lambda c: c.execute(_TAKE, params).fetchone())
        assert row is not None
        granted, tokens = bool(row[0]), float(row[1])
        return 0.0 if granted else max(0.0, (1.0 - tokens) * period / count)

    # -- the listener -----------------------------------------------------------------------

    def _start(self) -> None:
        self._listener.start()

    def _listen(self) -> None:
        """LISTEN on a connection of its own; note every revision announced, and re-read the
        revision every LISTEN_POLL_S (a NOTIFY sent while this was reconnecting)."""
        while not self._closed.is_set():
            try:
                with psycopg.connect(
                    self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._closed.is_set():
                        with guarded(conn):
                            row = conn.execute("SELECT revision FROM vultrino_store").fetchone()
                        if row is not None:
                            self._notified = max(self._notified, int(row[0]))
                        self._listening = True
                        for note in conn.notifies(timeout=LISTEN_POLL_S):
                            with contextlib.suppress(ValueError):
                                self._notified = max(self._notified, int(note.payload))
            except (psycopg.Error, _Overran):
                self._listening = False  # until reconnected, every read asks the database
                self._closed.wait(0.5)
        self._listening = False

    def _release(self) -> None:
        self._closed.set()
        self._listening = False
        self._pool.close(timeout=1.0)

    def __repr__(self) -> str:
        state = "closed" if self._key is None else "open"
        return f"<PostgresStore {self._where!r} {state}>"


def read_once_more(
    pool: psycopg_pool.ConnectionPool[Any],
    where: str,
    doing: str,
    fn: Callable[[psycopg.Connection[Any]], _T],
) -> _T:
    """``fn`` on a connection of ``pool``, psycopg's errors mapped to the store's (see
    :meth:`PostgresStore._mapped`); a connection the database dropped while it sat in the pool
    (a restart) is replaced once. For reads, and for writes that are safe to send again."""
    with PostgresStore._mapped(where, doing):
        for attempt in (1, 2):
            with pool.connection() as conn:
                try:
                    with guarded(conn):
                        return fn(conn)
                except psycopg.OperationalError:
                    if attempt == 2 or not conn.broken:
                        raise
    raise AssertionError("unreachable")  # pragma: no cover
