"""The sealed credential store: ``credentials.enc`` (DESIGN.md section 4, docs/store.md), or
the same sealed records in a PostgreSQL database (docs/scaling.md).

Knows nothing about plugins. Inside Vultrino it is opened by :mod:`vultrino.services`, for the
facade and the call pipeline, through :func:`open_store` / :func:`create_store`: the one place
that picks the backend from where the store lives (a path, or a ``postgresql://`` URL).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vultrino.errors import StoreError
from vultrino.store._sealing import KdfParams, StoreKey, verify_signature
from vultrino.store.credentials import (
    ALIAS_MAX_LENGTH,
    Credential,
    CredentialStore,
    SecretVersion,
    VersionRetention,
    validate_alias,
)

if TYPE_CHECKING:
    from vultrino.store.pg_audit import AuditTable

__all__ = [
    "ALIAS_MAX_LENGTH",
    "Credential",
    "CredentialStore",
    "KdfParams",
    "SecretVersion",
    "VersionRetention",
    "StoreKey",
    "audit_table",
    "create_store",
    "is_database_url",
    "open_store",
    "validate_alias",
    "verify_signature",
]

Location = Path | str  # a store file, or a postgresql:// URL


def is_database_url(location: object) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a store file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def _postgres() -> type[CredentialStore]:
    try:
        from vultrino.store.postgres import PostgresStore
    except ImportError as exc:
        raise StoreError(
            f"the store is a PostgreSQL URL, but the PostgreSQL driver is not installed "
            f"({exc.name or 'psycopg'}); install it with `pip install 'vultrino[postgres]'`"
        ) from None
    return PostgresStore


def audit_table(
    url: str, signer: Callable[[bytes], tuple[bytes, bytes] | None] | None = None
) -> AuditTable:
    """The audit log kept in the PostgreSQL database at ``url`` (connects on first use); each
    row is signed with ``signer`` (the store's audit key) when it gives a signature."""
    try:
        from vultrino.store.pg_audit import AuditTable
    except ImportError as exc:
        raise StoreError(
            f"the store is a PostgreSQL URL, but the PostgreSQL driver is not installed "
            f"({exc.name or 'psycopg'}); install it with `pip install 'vultrino[postgres]'`"
        ) from None
    return AuditTable(url, signer)


def open_store(
    location: Location,
    password: str | None = None,
    *,
    key: StoreKey | None = None,
    retention: VersionRetention | None = None,
) -> CredentialStore:
    """Open the store at ``location`` (a path or a database URL) with its password or key."""
    if is_database_url(location):
        return _postgres().open(location, password, key=key, retention=retention)  # type: ignore[arg-type]
    return CredentialStore.open(Path(location), password, key=key, retention=retention)


def create_store(
    location: Location,
    password: str,
    kdf: KdfParams | None = None,
    *,
    retention: VersionRetention | None = None,
) -> CredentialStore:
    """Create an empty store at ``location`` (a path, or an empty database)."""
    if is_database_url(location):
        return _postgres().create(location, password, kdf, retention=retention)  # type: ignore[arg-type]
    return CredentialStore.create(Path(location), password, kdf, retention=retention)
