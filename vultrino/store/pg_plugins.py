"""Installed plugins shared through a PostgreSQL store: content-addressed files, one row per
plugin (docs/scaling.md, "Plugins").

This module knows files and names, not what a plugin is: the installer
(:mod:`vultrino.plugins.install.shared`) decides what a plugin's files are and where they go.
Two tables, beside the store's own:

``vultrino_blobs``
    ``sha256`` (hex) and ``data``: every file of every installed plugin, once per content.
``vultrino_plugins``
    ``name``, ``version``, ``files`` (file name -> sha256), ``digest`` (the sha256 of the
    name and that list: what a replica compares with what it holds), ``metadata`` (what the
    installer recorded), the store ``revision`` that wrote it, and ``mac``: a keyed BLAKE2b of
    the name, version, digest, files and metadata under a subkey of the store's
    password-derived key (:meth:`PostgresStore.plugin_mac`).

A publish or a withdrawal is one transaction that also bumps the store's revision and sends
its ``NOTIFY`` (:data:`vultrino.store.postgres.CHANNEL`), so every replica hears of it as of
any other write, and the revision (re-read every second) is the fallback for a missed
notification. A row is checked against its MAC before anything of it is used, so a row written
by anyone without the store's password (a file, its sha256 and the digest replaced together by
a direct write to the database) is refused, and so is a row with no MAC (written before rows
had one); files fetched back are checked against their sha256: a row or file that fails is
refused (:class:`~vultrino.errors.StoreCorruptError`). Plugin files are not secret (they are
what any user installs), so they are authenticated, not sealed; a re-key re-MACs the rows.
Connections and error mapping are the store's (:meth:`PostgresStore.query`,
:meth:`PostgresStore.transact`): only :mod:`vultrino.store.postgres` imports psycopg.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vultrino.errors import StoreCorruptError, StoreError
from vultrino.store.postgres import CHANNEL, PostgresStore

__all__ = ["PluginShelf", "SharedPlugin", "files_digest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vultrino_blobs (
    sha256 text PRIMARY KEY,
    data bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS vultrino_plugins (
    name text PRIMARY KEY,
    version text NOT NULL,
    digest text NOT NULL,
    files jsonb NOT NULL,
    metadata jsonb NOT NULL,
    revision bigint NOT NULL
);
ALTER TABLE vultrino_plugins ADD COLUMN IF NOT EXISTS mac bytea;
"""
_SCHEMA_LOCK = 0x76756C74  # an advisory lock: two replicas creating the tables at once
_FILE_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,200}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_AGAIN = "install the plugin again on any replica (`vultrino plugin install SOURCE --force`)"
# blobs no plugin row names any more
_COLLECT = """
DELETE FROM vultrino_blobs b WHERE NOT EXISTS (
    SELECT 1 FROM vultrino_plugins p, jsonb_each_text(p.files) f WHERE f.value = b.sha256
)
"""


def files_digest(name: str, files: Mapping[str, str]) -> str:
    """The sha256 of a plugin's name and its (file name, sha256) list: one value that changes
    when any file does."""
    lines = "".join(f"{f}\0{files[f]}\n" for f in sorted(files))
    return hashlib.sha256(f"{name}\n{lines}".encode()).hexdigest()


def _safe_name(name: str) -> bool:
    return bool(_FILE_NAME.fullmatch(name)) and name not in {".", ".."}


@dataclass(frozen=True)
class SharedPlugin:
    """One row of ``vultrino_plugins``."""

    name: str
    version: str
    digest: str
    files: dict[str, str]  # file name -> sha256 (hex)
    metadata: dict[str, Any]
    revision: int


class PluginShelf:
    """The shared plugins of one open :class:`PostgresStore` (its tables are created when
    missing, so a database made before them gains them on first use)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._ready = False

    @property
    def location(self) -> str:
        return self._store.location

    def _ensure(self) -> None:
        if self._ready:
            return

        def create(conn: Any) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(_SCHEMA)

        self._store.transact("creating the shared plugins' tables", create)
        self._ready = True

    # -- reading --------------------------------------------------------------------------

    def listing(self) -> dict[str, str]:
        """Every shared plugin's name and digest (one round trip)."""
        self._ensure()
        rows = self._store.query(
            "listing the shared plugins",
            lambda c: c.execute("SELECT name, digest FROM vultrino_plugins").fetchall(),
        )
        return {str(name): str(digest) for name, digest in rows}

    def get(self, name: str) -> SharedPlugin | None:
        """The row of plugin ``name``; None when no replica installed it."""
        self._ensure()
        row = self._store.query(
            f"reading shared plugin {name}",
            lambda c: c.execute(
                "SELECT name, version, digest, files, metadata, revision, mac "
                "FROM vultrino_plugins WHERE name = %s",
                (name,),
            ).fetchone(),
        )
        if row is None:
            return None
        files, metadata = row[3], row[4]
        where = f"shared plugin {name} in {self.location}"
        mac = None if row[6] is None else bytes(row[6])
        if mac is None:
            raise StoreCorruptError(
                f"the {where} carries no MAC: it was written before plugin rows were "
                "authenticated with the store's key (or its MAC was removed), so nothing of it "
                f"is used; {_AGAIN}"
            )
        fields = {"name": name, "version": row[1], "digest": row[2], "files": files}
        if not self._store.plugin_mac_matches(mac, {**fields, "metadata": metadata}):
            raise StoreCorruptError(
                f"the {where} fails its MAC: it was not written by a replica holding the store "
                "password (someone with write access to the database changed it, or it was "
                "MAC'd under a key from before a re-key), so nothing of it is used; check who "
                f"can write to the database, then {_AGAIN}"
            )
        if not isinstance(files, dict) or not all(
            isinstance(f, str) and isinstance(d, str) and _safe_name(f) and _SHA256.fullmatch(d)
            for f, d in files.items()
        ):
            raise StoreCorruptError(
                f"the {where} lists files that are not plain names with sha256 digests: the "
                "row was modified or damaged; install the plugin again on any replica "
                "(`vultrino plugin install SOURCE --force`)"
            )
        if files_digest(name, files) != row[2]:
            raise StoreCorruptError(
                f"the {where} does not match its own digest: the row was modified or damaged; "
                "install the plugin again on any replica (`vultrino plugin install SOURCE "
                "--force`)"
            )
        return SharedPlugin(
            name=str(row[0]),
            version=str(row[1]),
            digest=str(row[2]),
            files=dict(files),
            metadata=metadata if isinstance(metadata, dict) else {},
            revision=int(row[5]),
        )

    def contents(self, plugin: SharedPlugin) -> dict[str, bytes]:
        """The bytes of every file of ``plugin``, each checked against its sha256 first: a
        file whose bytes do not match (or that is missing) is refused with StoreCorruptError."""
        wanted = sorted(set(plugin.files.values()))
        rows = self._store.query(
            f"reading shared plugin {plugin.name}'s files",
            lambda c: c.execute(
                "SELECT sha256, data FROM vultrino_blobs WHERE sha256 = ANY(%s)", (wanted,)
            ).fetchall(),
        )
        blobs = {str(sha): bytes(data) for sha, data in rows}
        out: dict[str, bytes] = {}
        for fname, sha in sorted(plugin.files.items()):
            data = blobs.get(sha)
            again = _AGAIN
            if data is None:
                raise StoreCorruptError(
                    f"shared plugin {plugin.name}: its file {fname} (sha256 {sha[:12]}…) is "
                    f"missing from {self.location}; {again}"
                )
            actual = hashlib.sha256(data).hexdigest()
            if actual != sha:
                raise StoreCorruptError(
                    f"shared plugin {plugin.name}: its file {fname} in {self.location} does "
                    f"not match its sha256 (the bytes hash to {actual[:12]}…, the row names "
                    f"{sha[:12]}…): the row was modified or damaged, and it is not used; "
                    f"{again}"
                )
            out[fname] = data
        return out

    # -- writing --------------------------------------------------------------------------

    def publish(
        self, name: str, version: str, files: Mapping[str, bytes], metadata: Mapping[str, Any]
    ) -> str:
        """Store plugin ``name``'s files (by sha256) and its row in one transaction, replacing
        any earlier version, and announce it; returns its digest."""
        bad = sorted(f for f in files if not _safe_name(f))
        if bad:
            raise StoreError(f"plugin {name}: cannot share files with these names: {bad}")
        self._ensure()
        digests = {f: hashlib.sha256(data).hexdigest() for f, data in files.items()}
        digest = files_digest(name, digests)
        by_sha = {digests[f]: bytes(data) for f, data in files.items()}
        # what the jsonb column gives back, so the MAC is over what every replica reads
        meta = json.loads(json.dumps(dict(metadata), sort_keys=True, default=str))

        def write(conn: Any) -> None:
            revision, seal = _bump(conn)
            # under the header row's lock: a re-key cannot slip in before this commits
            fields = {"name": name, "version": version, "digest": digest, "files": digests}
            mac = self._store.plugin_mac({**fields, "metadata": meta}, seal=seal)
            with conn.cursor() as cur:
                cur.executemany(
                    # a row whose bytes were damaged is repaired by publishing them again
                    "INSERT INTO vultrino_blobs AS b (sha256, data) VALUES (%s, %s) "
                    "ON CONFLICT (sha256) DO UPDATE SET data = excluded.data "
                    "WHERE b.data IS DISTINCT FROM excluded.data",
                    sorted(by_sha.items()),
                )
            conn.execute(
                "INSERT INTO vultrino_plugins "
                "(name, version, digest, files, metadata, revision, mac) "
                "VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s) ON CONFLICT (name) DO UPDATE "
                "SET version = excluded.version, digest = excluded.digest, files = excluded.files, "
                "metadata = excluded.metadata, revision = excluded.revision, mac = excluded.mac",
                (
                    name,
                    version,
                    digest,
                    json.dumps(digests, sort_keys=True),
                    json.dumps(meta, sort_keys=True),
                    revision,
                    mac,
                ),
            )
            conn.execute(_COLLECT)
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(revision)))

        self._store.transact(f"sharing plugin {name}", write)
        return digest

    def withdraw(self, name: str) -> bool:
        """Delete plugin ``name``'s row (and the files no other plugin uses) in one
        transaction, and announce it; False when it was not shared."""
        self._ensure()

        def write(conn: Any) -> bool:
            # the header row first, as every plugin write and a re-key take it: no deadlock
            conn.execute("SELECT 1 FROM vultrino_store WHERE id = 1 FOR UPDATE")
            gone = conn.execute(
                "DELETE FROM vultrino_plugins WHERE name = %s RETURNING name", (name,)
            ).fetchone()
            if gone is None:
                return False
            revision, _ = _bump(conn)
            conn.execute(_COLLECT)
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(revision)))
            return True

        done: bool = self._store.transact(f"removing shared plugin {name}", write)
        return done


def _bump(conn: Any) -> tuple[int, bytes]:
    """Bump the store's revision (every replica re-checks its plugins when it moves); the new
    revision and the header row (its seal), locked until the transaction ends."""
    row = conn.execute(
        "UPDATE vultrino_store SET revision = revision + 1 WHERE id = 1 RETURNING revision, seal"
    ).fetchone()
    if row is None:
        raise StoreError("the store's header row is missing; run `vultrino init`")
    return int(row[0]), bytes(row[1])
