"""The sealed file format of credentials.enc: header, Argon2id key, XSalsa20-Poly1305 secretbox.

This is the only module that imports PyNaCl (``nacl``). It knows bytes, keys and headers; it
does not know what a credential is. docs/store.md describes the format byte by byte.

Layout (all integers big-endian)::

    offset  size  field
         0     8  magic  b"VULTRINO"
         8     1  format (1)
         9     1  kdf    (1 = argon2id)
        10     4  opslimit   u32
        14     4  memlimit   u32, bytes
        18    16  salt
        34    24  nonce
        58   ...  secretbox ciphertext (16-byte Poly1305 tag + encrypted msgpack document)

Every header byte is authenticated: magic, format and kdf are checked for exact values;
opslimit, memlimit and salt feed the key derivation; the nonce feeds the secretbox. On top of
that the sealed document carries a copy of the whole header, which the reader compares (see
``credentials.py``), so the binding does not rest on any one of those arguments alone.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import nacl.exceptions
import nacl.pwhash.argon2id as _argon2id
import nacl.secret
import nacl.signing
import nacl.utils

from vultrino.errors import ConfigError, StoreCorruptError, StoreError, StoreFormatError

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "KDF_ARGON2ID",
    "KEY_SIZE",
    "MAC_SIZE",
    "MAGIC",
    "MAX_MEMLIMIT",
    "MAX_OPSLIMIT",
    "MIN_MEMLIMIT",
    "MIN_OPSLIMIT",
    "NONCE_SIZE",
    "SALT_SIZE",
    "BINDING_SIZE",
    "FORMAT_OFFSET",
    "binding_of",
    "Header",
    "KdfParams",
    "StoreKey",
    "Unauthentic",
    "derive_key",
    "new_signing_seed",
    "new_header",
    "new_salt",
    "open_box",
    "parse_header",
    "seal_box",
    "sign",
    "verify_signature",
    "wipe",
]

MAGIC = b"VULTRINO"
FORMAT_VERSION = 2  # the newest format this build writes
#: Every format this build reads. Format 2 is format 1 plus API keys and roles in the sealed
#: document; a store is written as format 2 only once it holds them, so an older Vultrino
#: (which would drop them on its next write) refuses it instead of losing them silently.
FORMATS_READ = (1, 2)
KDF_ARGON2ID = 1

SALT_SIZE: int = _argon2id.SALTBYTES  # 16
NONCE_SIZE: int = nacl.secret.SecretBox.NONCE_SIZE  # 24
KEY_SIZE: int = nacl.secret.SecretBox.KEY_SIZE  # 32
MAC_SIZE: int = nacl.secret.SecretBox.MACBYTES  # 16

_HEADER = struct.Struct(f">8sBBII{SALT_SIZE}s{NONCE_SIZE}s")
HEADER_SIZE: int = _HEADER.size  # 58
# The header bytes that fix the key (magic, format, kdf, opslimit, memlimit, salt): all but the
# nonce, which every write renews. A key derived for one binding opens every later version of
# the store until a rekey (a fresh salt) changes it.
BINDING_SIZE: int = HEADER_SIZE - NONCE_SIZE  # 34
FORMAT_OFFSET = 8  # the format byte, after the 8-byte magic

# Bounds checked before any key derivation, so a hostile header cannot make us allocate
# gigabytes or spin for minutes. The floor is libsodium's own minimum; the ceilings are far
# above any sensible setting (the default is 3 passes over 128 MiB) yet bound the worst case.
MIN_OPSLIMIT: int = _argon2id.OPSLIMIT_MIN  # 1
MAX_OPSLIMIT = 16
MIN_MEMLIMIT: int = _argon2id.MEMLIMIT_MIN  # 8 KiB
MAX_MEMLIMIT = 1 << 30  # 1 GiB

_DEFAULT_OPSLIMIT = 3
_DEFAULT_MEMLIMIT = 128 << 20  # 128 MiB; measured ~0.37 s on a 2-core VM, see docs/store.md


def _params_problem(opslimit: object, memlimit: object) -> str | None:
    """Describe why (opslimit, memlimit) is out of bounds, or None when it is fine."""
    if type(opslimit) is not int or not MIN_OPSLIMIT <= opslimit <= MAX_OPSLIMIT:
        return f"opslimit must be an integer from {MIN_OPSLIMIT} to {MAX_OPSLIMIT}"
    if type(memlimit) is not int or not MIN_MEMLIMIT <= memlimit <= MAX_MEMLIMIT:
        return f"memlimit must be an integer from {MIN_MEMLIMIT} to {MAX_MEMLIMIT} bytes"
    return None


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters: passes over memory (``opslimit``) and memory in bytes.

    They are stored in the header, so a store can be re-keyed to stronger values later.
    Out-of-bounds values are a :class:`ConfigError` (they come from a flag or config.toml).
    """

    opslimit: int
    memlimit: int

    def __post_init__(self) -> None:
        problem = _params_problem(self.opslimit, self.memlimit)
        if problem is not None:
            raise ConfigError(
                f"invalid key-derivation parameters: {problem} "
                f"(got opslimit={self.opslimit!r}, memlimit={self.memlimit!r})"
            )

    @classmethod
    def default(cls) -> KdfParams:
        """What new stores use: about 0.2-0.5 s and 128 MiB on a typical machine."""
        return cls(_DEFAULT_OPSLIMIT, _DEFAULT_MEMLIMIT)

    @classmethod
    def minimal(cls) -> KdfParams:
        """libsodium's minimum. Fast and weak: for tests only, never for a real store."""
        return cls(MIN_OPSLIMIT, MIN_MEMLIMIT)


@dataclass(frozen=True)
class Header:
    """The 58 bytes in front of the ciphertext, parsed. ``raw`` is exactly what is on disk."""

    kdf: KdfParams
    salt: bytes
    nonce: bytes
    raw: bytes

    @property
    def binding(self) -> bytes:
        """What the key depends on (see ``BINDING_SIZE``): equal bindings, equal keys. The
        format byte is zeroed: it changes when a document first holds an API key or a role,
        which is no rekey (the same password, salt and KDF give the same key)."""
        return binding_of(self.raw)


@dataclass(frozen=True)
class StoreKey:
    """A derived store key and the header binding it was derived for.

    What an unlock session holds instead of the password (docs/security.md): it opens the
    store as long as the file's binding is the same, and nothing else. ``key`` is a bytearray
    so that :meth:`wipe` can zero it (best effort).
    """

    key: bytearray
    binding: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_SIZE or len(self.binding) != BINDING_SIZE:
            raise StoreError(
                f"a store key is {KEY_SIZE} bytes for a {BINDING_SIZE}-byte header binding "
                f"(got {len(self.key)} and {len(self.binding)})"
            )

    def wipe(self) -> None:
        wipe(self.key)

    def __repr__(self) -> str:
        return "StoreKey(<hidden>)"


def binding_of(raw: bytes) -> bytes:
    """The binding of a header's first ``BINDING_SIZE`` bytes (see :attr:`Header.binding`)."""
    return raw[:FORMAT_OFFSET] + b"\0" + raw[FORMAT_OFFSET + 1 : BINDING_SIZE]


def new_header(kdf: KdfParams, salt: bytes, fmt: int = 1) -> Header:
    """A header for a fresh write: the given salt and KDF parameters, and a fresh random nonce.

    A random 24-byte nonce per write is safe for XSalsa20 (collisions are negligible), so the
    same key can seal every later version of the store. ``fmt`` is the format byte (1, or 2
    for a document holding API keys or roles).
    """
    if fmt not in FORMATS_READ:
        raise ValueError(f"unknown store format {fmt}")
    nonce = nacl.utils.random(NONCE_SIZE)
    raw = _HEADER.pack(MAGIC, fmt, KDF_ARGON2ID, kdf.opslimit, kdf.memlimit, salt, nonce)
    return Header(kdf=kdf, salt=salt, nonce=nonce, raw=raw)


def new_salt() -> bytes:
    """A fresh random salt: every create and every rekey gets its own."""
    return nacl.utils.random(SALT_SIZE)


def parse_header(data: bytes, where: str) -> Header:
    """Parse and bounds-check the header of ``data`` (the whole file) without deriving a key.

    Raises StoreCorruptError for a short file, wrong magic or out-of-bounds KDF parameters, and
    StoreFormatError for a format or KDF number this build does not know. ``where`` names the
    file in messages.
    """
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise StoreCorruptError(
            f"{where} is not a Vultrino credential store (bad magic bytes); "
            "restore it from a backup or move it away and run `vultrino init`"
        )
    if len(data) < HEADER_SIZE + MAC_SIZE:
        raise StoreCorruptError(
            f"{where} is truncated ({len(data)} bytes, a store has at least "
            f"{HEADER_SIZE + MAC_SIZE}); restore it from a backup"
        )
    magic, fmt, kdf, opslimit, memlimit, salt, nonce = _HEADER.unpack_from(data)
    del magic
    if fmt not in FORMATS_READ:
        raise StoreFormatError(
            f"{where} uses store format {fmt}, this Vultrino reads formats "
            f"{', '.join(map(str, FORMATS_READ))}; upgrade Vultrino (or the file header is "
            "damaged)"
        )
    if kdf != KDF_ARGON2ID:
        raise StoreFormatError(
            f"{where} uses key-derivation function #{kdf}, this Vultrino knows only "
            f"#{KDF_ARGON2ID} (argon2id); upgrade Vultrino (or the file header is damaged)"
        )
    problem = _params_problem(opslimit, memlimit)
    if problem is not None:
        raise StoreCorruptError(
            f"{where} has out-of-bounds key-derivation parameters in its header ({problem}); "
            "the file is damaged or was tampered with - restore it from a backup"
        )
    return Header(
        kdf=KdfParams(opslimit, memlimit),
        salt=salt,
        nonce=nonce,
        raw=bytes(data[:HEADER_SIZE]),
    )


def derive_key(password: bytes, salt: bytes, kdf: KdfParams) -> bytearray:
    """Argon2id(password, salt, opslimit, memlimit) -> 32-byte key, in a wipeable bytearray."""
    try:
        key = _argon2id.kdf(KEY_SIZE, password, salt, opslimit=kdf.opslimit, memlimit=kdf.memlimit)
    except (nacl.exceptions.RuntimeError, MemoryError) as exc:
        raise StoreError(
            f"key derivation failed (argon2id with {kdf.memlimit >> 20} MiB); "
            "free some memory and try again"
        ) from exc
    return bytearray(key)


class Unauthentic(Exception):  # noqa: N818 - internal signal, never escapes the store package
    """The secretbox tag did not verify: wrong key, or modified bytes. The caller decides."""


def seal_box(key: bytearray, header: Header, plaintext: bytes) -> bytes:
    """The whole file: header bytes then the secretbox of ``plaintext`` under ``header.nonce``."""
    box = nacl.secret.SecretBox(bytes(key))
    sealed = box.encrypt(plaintext, header.nonce)
    return header.raw + sealed.ciphertext


def open_box(key: bytearray, header: Header, data: bytes) -> bytes:
    """Verify and decrypt the ciphertext that follows the header in ``data``.

    Raises :class:`Unauthentic` when the tag does not verify; the caller knows whether the key
    is known-good (then the file was modified) or not (then it may be a wrong password).
    """
    box = nacl.secret.SecretBox(bytes(key))
    try:
        return box.decrypt(bytes(data[HEADER_SIZE:]), header.nonce)
    except nacl.exceptions.CryptoError as exc:
        raise Unauthentic("secretbox tag mismatch") from exc


def wipe(buf: bytearray | None) -> None:
    """Overwrite ``buf`` with zeros. Best effort: Python may hold transient copies elsewhere."""
    if buf is not None:
        buf[:] = bytes(len(buf))


def new_signing_seed() -> bytes:
    """A fresh Ed25519 signing key (its 32-byte seed), for the audit log's signed head."""
    return nacl.utils.random(32)


def sign(seed: bytes, message: bytes) -> tuple[bytes, bytes]:
    """The Ed25519 signature of ``message`` under the key of ``seed``, and that public key."""
    key = nacl.signing.SigningKey(bytes(seed))
    return key.sign(message).signature, bytes(key.verify_key)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is an Ed25519 signature of ``message`` by ``public_key``."""
    try:
        nacl.signing.VerifyKey(bytes(public_key)).verify(bytes(message), bytes(signature))
    except (
        nacl.exceptions.BadSignatureError,
        nacl.exceptions.ValueError,
        nacl.exceptions.TypeError,
    ):
        return False
    return True


def hash_password(password: bytes) -> str:
    """An Argon2id password hash in libsodium's self-describing string form (``$argon2id$…``),
    with the interactive cost: what the web UI's admin password is kept as."""
    return _argon2id.str(
        bytes(password),
        opslimit=_argon2id.OPSLIMIT_INTERACTIVE,
        memlimit=_argon2id.MEMLIMIT_INTERACTIVE,
    ).decode("ascii")


def check_password(hashed: str, password: bytes) -> bool:
    """Whether ``password`` matches ``hashed`` (:func:`hash_password`); constant time in the
    password (libsodium's verify). A malformed hash never matches."""
    try:
        return bool(_argon2id.verify(hashed.encode("ascii"), bytes(password)))
    except (
        nacl.exceptions.CryptoError,
        nacl.exceptions.ValueError,
        nacl.exceptions.TypeError,
        UnicodeEncodeError,
    ):
        return False
