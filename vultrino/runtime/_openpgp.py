"""Reading an OpenPGP transferable secret key (RFC 4880 / RFC 9580 v4 keys) for the ``keys``
interface's ``openpgp`` key format.

Only parsing lives here: the armor, the packets, the multiprecision integers and the S2K
string-to-key derivation (``hashlib``). Decrypting the secret part is the caller's cipher
(``_keys`` passes AES-CFB from ``cryptography``), and the key objects are built there too. What
is read: the first secret key packet (the primary key, which signs), its public part and the
transferable public key as ``gpg --export`` writes it (public key and subkey packets, user ids,
user attributes and signatures; trust packets dropped).

Supported: v4 keys with RSA (1, 3) or EdDSA over Ed25519 (22, the legacy encoding gpg writes;
27, RFC 9580's Ed25519), unprotected (usage 0) or protected with S2K usage 254 (SHA-1 check) or
255 (two-octet checksum), AES-128/192/256 in CFB mode, S2K simple, salted or iterated+salted over
SHA-1/SHA-2. Every failure is :class:`OpenPGPError` with a reason that never quotes key bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["OpenPGPError", "SecretKey", "WrongPassphrase", "crc24", "read_secret_key"]

#: An Ed25519 OID as algorithm 22 writes it (1.3.6.1.4.1.11591.15.1), without its length octet.
ED25519_OID = bytes.fromhex("2b06010401da470f01")

_RSA = (1, 2, 3)
_EDDSA_LEGACY = 22
_ED25519 = 27
#: Symmetric algorithm id -> key size in bytes (AES-128/192/256).
_CIPHERS = {7: 16, 8: 24, 9: 32}
_HASHES = {2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}

SECRET_KEY, PUBLIC_KEY, SECRET_SUBKEY, PUBLIC_SUBKEY = 5, 6, 7, 14
SIGNATURE, USER_ID, USER_ATTRIBUTE, TRUST = 2, 13, 17, 12


class OpenPGPError(Exception):
    """The text is not a secret key this reader supports (the reason names no key bytes)."""


class WrongPassphrase(OpenPGPError):  # noqa: N818 - a kind of OpenPGPError
    """The secret part did not decrypt to a valid key: the passphrase is wrong (or missing)."""


def crc24(data: bytes) -> int:
    """The armor checksum (RFC 4880 6.1)."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(text: str) -> bytes:
    """The bytes of a ``PGP PRIVATE KEY BLOCK`` armor, its checksum checked when present."""
    lines = [line.strip() for line in text.strip().splitlines()]
    try:
        start = lines.index("-----BEGIN PGP PRIVATE KEY BLOCK-----")
        end = lines.index("-----END PGP PRIVATE KEY BLOCK-----", start)
    except ValueError:
        raise OpenPGPError(
            "not an ASCII-armored OpenPGP secret key (-----BEGIN PGP PRIVATE KEY BLOCK-----)"
        ) from None
    body = lines[start + 1 : end]
    while body and ":" in body[0]:  # armor headers (Version:, Comment:)
        body.pop(0)
    checksum = None
    if body and body[-1].startswith("="):
        checksum = body.pop()[1:]
    try:
        data = base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise OpenPGPError("the armor's body is not valid base64") from None
    if checksum:
        try:
            expected = int.from_bytes(base64.b64decode(checksum, validate=True), "big")
        except (binascii.Error, ValueError):
            raise OpenPGPError("the armor's checksum line is not valid base64") from None
        if crc24(data) != expected:
            raise OpenPGPError("the armor's checksum does not match (the key text is damaged)")
    return data


def packets(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """``(tag, header, body)`` of each packet (old and new formats; no partial lengths)."""
    out: list[tuple[int, bytes, bytes]] = []
    i = 0
    n = len(data)
    while i < n:
        start = i
        first = data[i]
        if not first & 0x80:
            raise OpenPGPError(f"byte {i} does not start an OpenPGP packet")
        i += 1
        if first & 0x40:  # new format
            tag = first & 0x3F
            if i >= n:
                raise OpenPGPError("a packet header is cut short")
            o1 = data[i]
            if o1 < 192:
                length, i = o1, i + 1
            elif o1 < 224:
                if i + 1 >= n:
                    raise OpenPGPError("a packet header is cut short")
                length, i = ((o1 - 192) << 8) + data[i + 1] + 192, i + 2
            elif o1 == 255:
                length, i = int.from_bytes(data[i + 1 : i + 5], "big"), i + 5
            else:
                raise OpenPGPError("partial-length packets are not part of a key")
        else:
            tag = (first >> 2) & 0x0F
            ltype = first & 3
            if ltype == 3:
                length = n - i
            else:
                size = (1, 2, 4)[ltype]
                length, i = int.from_bytes(data[i : i + size], "big"), i + size
        if i + length > n:
            raise OpenPGPError("a packet is longer than the data (the key is cut short)")
        out.append((tag, data[start:i], data[i : i + length]))
        i += length
    return out


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise OpenPGPError("a key packet is cut short")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def mpi(self) -> int:
        bits = int.from_bytes(self.take(2), "big")
        return int.from_bytes(self.take((bits + 7) // 8), "big")


def _public_material(r: _Reader, algo: int) -> dict[str, object]:
    """Read the algorithm's public key material; what the key needs for signing."""
    if algo in _RSA:
        return {"n": r.mpi(), "e": r.mpi()}
    if algo in (_EDDSA_LEGACY, 18, 19):  # EdDSA, ECDH, ECDSA: OID, point (ECDH: + KDF)
        oid = r.take(r.byte())
        point = r.mpi()
        if algo == 18:
            r.take(r.byte())
        return {"oid": oid, "point": point}
    if algo == _ED25519:
        return {"point": int.from_bytes(r.take(32), "big")}
    if algo == 17:  # DSA
        return {"p": r.mpi(), "q": r.mpi(), "g": r.mpi(), "y": r.mpi()}
    if algo in (16, 20):  # ElGamal
        return {"p": r.mpi(), "g": r.mpi(), "y": r.mpi()}
    raise OpenPGPError(f"public-key algorithm {algo} is not supported")


def _s2k_key(r: _Reader, passphrase: bytes, size: int) -> bytes:
    kind = r.byte()
    if kind == 101:
        raise OpenPGPError(
            "the secret key is a stub (gpg --export-secret-subkeys, or a key on a smartcard): "
            "export the primary secret key with gpg --export-secret-keys"
        )
    hash_id = r.byte()
    name = _HASHES.get(hash_id)
    if name is None:
        raise OpenPGPError(f"S2K hash algorithm {hash_id} is not supported")
    salt = b""
    count = 0
    if kind in (1, 3):
        salt = r.take(8)
    if kind == 3:
        c = r.byte()
        count = (16 + (c & 15)) << ((c >> 4) + 6)
    elif kind not in (0, 1):
        raise OpenPGPError(f"S2K specifier {kind} is not supported")
    material = salt + passphrase
    out = b""
    preload = 0
    while len(out) < size:
        h = hashlib.new(name)
        h.update(b"\0" * preload)
        if kind == 3:
            total = max(count, len(material))
            full, rest = divmod(total, len(material))
            # hash `total` octets of material repeated, in chunks (the count is up to 65 MB)
            chunk = material * max(1, 65536 // len(material))
            per = len(chunk) // len(material)
            left = full
            while left >= per:
                h.update(chunk)
                left -= per
            h.update(material * left + material[:rest])
        else:
            h.update(material)
        out += h.digest()
        preload += 1
    return out[:size]


#: ``decrypt(symmetric algorithm id, key, iv, data) -> plaintext`` (AES-CFB).
Decrypt = Callable[[int, bytes, bytes, bytes], bytes]


@dataclass(frozen=True)
class SecretKey:
    """The primary key of a transferable secret key: its algorithm, public material, secret
    integers (RSA: ``d p q u``; EdDSA: ``seed``), and the exported transferable public key."""

    algorithm: int
    public: dict[str, object]
    secret: dict[str, int]
    transferable_public: bytes

    def __repr__(self) -> str:
        return f"SecretKey(algorithm={self.algorithm})"  # never the secret


def _old_packet(tag: int, body: bytes) -> bytes:
    """An old-format packet with the shortest length field, as gpg writes public keys."""
    if len(body) < 0x100:
        return bytes([0x80 | tag << 2]) + bytes([len(body)]) + body
    if len(body) < 0x10000:
        return bytes([0x80 | tag << 2 | 1]) + len(body).to_bytes(2, "big") + body
    return bytes([0x80 | tag << 2 | 2]) + len(body).to_bytes(4, "big") + body


def public_key(text: str) -> tuple[bytes, int]:
    """The transferable public key (binary) and the primary key's algorithm; no passphrase."""
    key = read_secret_key(text, None, None)
    return key.transferable_public, key.algorithm


def read_secret_key(text: str, passphrase: str | None, decrypt: Decrypt | None) -> SecretKey:
    """Parse the armored key; with ``decrypt``, also unlock the primary key's secret part."""
    data = dearmor(text)
    found = packets(data)
    if not found or found[0][0] != SECRET_KEY:
        raise OpenPGPError("the key block does not start with a secret key packet")
    transferable = bytearray()
    primary: tuple[int, dict[str, object], _Reader] | None = None
    for tag, header, body in found:
        if tag in (SECRET_KEY, SECRET_SUBKEY):
            r = _Reader(body)
            version = r.byte()
            if version != 4:
                raise OpenPGPError(f"version {version} keys are not supported (only v4)")
            r.take(4)  # creation time
            algo = r.byte()
            material = _public_material(r, algo)
            public_body = body[: r.at]
            transferable += _old_packet(
                PUBLIC_KEY if tag == SECRET_KEY else PUBLIC_SUBKEY, public_body
            )
            if tag == SECRET_KEY:
                if primary is not None:
                    raise OpenPGPError("the block holds more than one key; export just one")
                primary = (algo, material, r)
        elif tag in (USER_ID, USER_ATTRIBUTE, SIGNATURE):
            transferable += header + body  # as it was written
        # trust packets and anything else gpg keeps locally are not exported
    assert primary is not None
    algo, material, r = primary
    if algo not in (*_RSA, _EDDSA_LEGACY, _ED25519):
        raise OpenPGPError(
            f"the primary key's algorithm ({algo}) is not supported: use an RSA or Ed25519 key"
        )
    if algo == _EDDSA_LEGACY and material.get("oid") != ED25519_OID:
        raise OpenPGPError("the primary EdDSA key is not on Ed25519")
    secret: dict[str, int] = {}
    if decrypt is not None:
        secret = _unlock(r, algo, (passphrase or "").encode("utf-8"), decrypt)
    return SecretKey(algo, material, secret, bytes(transferable))


def _unlock(r: _Reader, algo: int, passphrase: bytes, decrypt: Decrypt) -> dict[str, int]:
    usage = r.byte()
    if usage == 0:
        plain = r.data[r.at :]
        check = "sum"
    elif usage in (254, 255):
        cipher = r.byte()
        size = _CIPHERS.get(cipher)
        if size is None:
            raise OpenPGPError(
                f"the key is protected with cipher {cipher}; only AES-128/192/256 are supported"
            )
        if not passphrase:
            raise WrongPassphrase("the key is protected by a passphrase and none is set")
        key = _s2k_key(r, passphrase, size)
        iv = r.take(16)
        plain = decrypt(cipher, key, iv, r.data[r.at :])
        check = "sha1" if usage == 254 else "sum"
    else:
        raise OpenPGPError(f"secret-key protection {usage} is not supported (only S2K 254/255)")
    if check == "sha1":
        body, digest = plain[:-20], plain[-20:]
        ok = len(plain) > 20 and hashlib.sha1(body).digest() == digest  # noqa: S324 - RFC 4880
    else:
        body, digest = plain[:-2], plain[-2:]
        ok = len(plain) > 2 and (sum(body) & 0xFFFF).to_bytes(2, "big") == digest
    if not ok:
        if usage == 0:
            raise OpenPGPError("the secret key's checksum does not match (the key is damaged)")
        raise WrongPassphrase("the passphrase does not unlock the key")
    s = _Reader(body)
    try:
        if algo in _RSA:
            return {"d": s.mpi(), "p": s.mpi(), "q": s.mpi(), "u": s.mpi()}
        if algo == _EDDSA_LEGACY:
            return {"seed": s.mpi()}
        return {"seed": int.from_bytes(s.take(32), "big")}
    except OpenPGPError:
        raise WrongPassphrase("the passphrase does not unlock the key") from None
