"""The sealed credential store: ``credentials.enc`` (DESIGN.md section 4, docs/store.md).

Knows nothing about plugins. Inside Vultrino it is opened by :mod:`vultrino.services`, for the
facade and the call pipeline.
"""

from __future__ import annotations

from vultrino.store._sealing import KdfParams, StoreKey, verify_signature
from vultrino.store.credentials import (
    ALIAS_MAX_LENGTH,
    Credential,
    CredentialStore,
    SecretVersion,
    VersionRetention,
    validate_alias,
)

__all__ = [
    "ALIAS_MAX_LENGTH",
    "Credential",
    "CredentialStore",
    "KdfParams",
    "SecretVersion",
    "VersionRetention",
    "StoreKey",
    "validate_alias",
    "verify_signature",
]
