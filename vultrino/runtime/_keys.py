"""The host side of the ``keys`` interface: key operations on a credential field, by name.

A plugin names a field of the credential the host bound to the current call; the host decodes
the field's value into a key (``key-format``), runs the operation here and hands back only its
output. The field's value never enters the guest. What a call may use is a :class:`KeyRing`:
the declared fields of the call's credential, nothing else (built by the plugin layer, bound to
the call by the runtime).

Every operation is a well-kept library's: PyNaCl (Ed25519), ``cryptography`` (ECDSA P-256,
RSA, PEM and DER loading, the AES-CFB that unlocks an OpenPGP key), ``coincurve``
(libsecp256k1: RFC 6979 nonces, low ``s``, recovery ids), ``pycryptodome`` (Keccak-256),
``hmac``/``hashlib`` (HMAC, SHA-1/SHA-2). This is the only module that imports them; ``_openpgp``
only parses an OpenPGP key's packets (the ``openpgp`` key format). Refusals are
:class:`KeyFailure` exceptions naming a ``key-error`` case;
they never carry any part of a key (library messages are dropped, not passed on).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any, Final

from vultrino.runtime import _openpgp
from vultrino.runtime.wit import KEY_ERRORS, KEY_FORMATS, KEYS_FUNCTIONS

__all__ = ["KeyFailure", "KeyRing", "hash_op", "public_op", "sign_op", "verify_op"]


class KeyFailure(Exception):  # noqa: N818 - a refusal carried to the ABI, not an error
    """An operation refused: ``case`` is one of the ``key-error`` cases (never a key's bytes)."""

    def __init__(self, case: str) -> None:
        assert case in KEY_ERRORS
        super().__init__(case)
        self.case = case


class KeyRing:
    """What one call's key operations may use: the declared fields of its credential that are
    set, by name (their text values). ``None`` for a call without a credential.

    A ring lives as long as the prepared action that made it (the plugin layer makes one per
    credential view), so it also keeps each key it has decoded, by operation, field and format:
    a signing plugin's second call does not parse the same PEM again.

    ``passphrases`` maps a field to the field holding its passphrase (the manifest's
    ``passphrase_field``), which the ``openpgp`` key format unlocks the key with. A passphrase
    field unlocks its key and is nothing else: no operation takes it as a key (it is
    ``unknown-field``), since any keyed output (an HMAC, a public key) over a passphrase chosen
    by a person would let whoever reads the output guess it offline.
    """

    __slots__ = ("_decoded", "_passphrase_fields", "fields", "http", "passphrases")

    def __init__(
        self,
        fields: Mapping[str, str],
        passphrases: Mapping[str, str] | None = None,
        http: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.fields = fields
        self.passphrases = passphrases or {}
        self._passphrase_fields = frozenset(self.passphrases.values())
        self._decoded: dict[tuple[str, str, str], object] = {}
        #: What the guest's ``http.send`` calls during this call: MessagePack request bytes
        #: in, MessagePack answer bytes out (the plugin layer's, which knows the credential and
        #: the manifest's ``[http]``); None when the plugin may not send requests.
        self.http = http

    def __repr__(self) -> str:
        return f"KeyRing(fields={sorted(self.fields)!r})"  # names only, never values

    def with_http(self, http: Callable[[bytes], bytes]) -> KeyRing:
        """The same fields and decoded keys, with ``http`` for one call's ``http.send``."""
        ring = KeyRing(self.fields, self.passphrases, http)
        ring._decoded = self._decoded
        return ring

    def value(self, name: str) -> str:
        if name in self._passphrase_fields:
            raise KeyFailure("unknown-field")
        v = self.fields.get(name)
        if not isinstance(v, str) or not v:
            raise KeyFailure("unknown-field")
        return v

    def key(
        self, kind: str, field: str, fmt: str, decode: Callable[[bytes, str], object]
    ) -> object:
        """The field's key for ``kind`` of operation, decoded once (``decode(bytes, fmt)``)."""
        slot = (kind, field, fmt)
        found = self._decoded.get(slot)
        if found is None:
            if fmt == "openpgp":
                pass_field = self.passphrases.get(field)
                passphrase = self.fields.get(pass_field) if pass_field else None
                found = _openpgp_key(kind, self.value(field), passphrase)
            else:
                found = decode(key_bytes(self.value(field), fmt), fmt)
            self._decoded[slot] = found
        return found


def key_bytes(text: str, fmt: str) -> bytes:
    """The field's text decoded as ``fmt`` (``key-format``); ``bad-format`` when it is not."""
    if fmt == "openpgp":  # only the kinds _openpgp_key makes read an OpenPGP key
        raise KeyFailure("bad-format")
    if fmt in ("raw", "pem"):
        return text.encode("utf-8")
    if fmt == "base32":
        return _base32(text)
    s = "".join(text.split())
    if fmt == "hex":
        if s[:2] in ("0x", "0X"):
            s = s[2:]
        try:
            return bytes.fromhex(s)
        except ValueError:
            raise KeyFailure("bad-format") from None
    try:  # base64, either alphabet, padding optional
        s = s.replace("-", "+").replace("_", "/")
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFailure("bad-format") from None


_BASE32: Final = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")}


def _base32(text: str) -> bytes:
    """RFC 4648 base32 as authenticator apps show a secret: either case, ``=`` padding
    optional, spaces (any whitespace) and ``-`` between groups ignored; the bits after the last
    whole byte are dropped. Text with no base32 digit at all is ``bad-format`` (an empty key)."""
    buffer = bits = 0
    out = bytearray()
    for ch in text:
        value = _BASE32.get(ch.upper())
        if value is None:
            if ch in "=-" or ch.isspace():
                continue
            raise KeyFailure("bad-format")
        buffer = (buffer << 5) | value
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append(buffer >> bits)
            buffer &= (1 << bits) - 1
    if not out:
        raise KeyFailure("bad-format")
    return bytes(out)


# --- private keys from bytes --------------------------------------------------------------------
# `cryptography` reads PEM (PKCS#8, SEC 1, PKCS#1) and DER; a raw scalar or seed is given as
# bytes of the key's size. Whatever the library says about a bad key is dropped: it might quote
# the input.


def _pem_or_der(data: bytes, fmt: str) -> object:
    from cryptography.hazmat.primitives import serialization

    try:
        if fmt == "pem":
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFailure("bad-format" if fmt == "pem" else "bad-key") from None
    except Exception:  # cryptography's UnsupportedAlgorithm and the like
        raise KeyFailure("bad-key") from None


def _ed25519_seed(data: bytes, fmt: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if fmt != "pem" and len(data) in (32, 64):  # a seed, or NaCl's seed || public key
        return data[:32]
    key = _pem_or_der(data, fmt)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFailure("bad-key")
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def _p256(data: bytes, fmt: str) -> object:
    from cryptography.hazmat.primitives.asymmetric import ec

    if fmt != "pem" and len(data) == 32:
        try:
            return ec.derive_private_key(int.from_bytes(data, "big"), ec.SECP256R1())
        except ValueError:
            raise KeyFailure("bad-key") from None
    key = _pem_or_der(data, fmt)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyFailure("bad-key")
    return key


def _secp256k1_secret(data: bytes, fmt: str) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    if fmt != "pem" and len(data) == 32:
        secret = data
    else:
        key = _pem_or_der(data, fmt)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256k1":
            raise KeyFailure("bad-key")
        secret = key.private_numbers().private_value.to_bytes(32, "big")
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    if not 0 < int.from_bytes(secret, "big") < n:
        raise KeyFailure("bad-key")
    return secret


def _rsa(data: bytes, fmt: str) -> object:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = _pem_or_der(data, fmt)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFailure("bad-key")
    return key


# --- OpenPGP keys (the ``openpgp`` key format) --------------------------------------------------
# ``_openpgp`` parses the armored transferable secret key; the secret part is decrypted here with
# AES-CFB and turned into the library's key object for the kind of operation asked for.


def _aes_cfb(cipher: int, key: bytes, iv: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    try:  # where cryptography 43+ keeps CFB (OpenPGP's secret-key protection needs it)
        from cryptography.hazmat.decrepit.ciphers.modes import CFB
    except ImportError:  # pragma: no cover - older cryptography
        from cryptography.hazmat.primitives.ciphers.modes import CFB

    del cipher  # AES-128/192/256: the key's size says which (the reader checked the id)
    dec = Cipher(algorithms.AES(key), CFB(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def _openpgp_key(kind: str, text: str, passphrase: str | None) -> object:
    """The key for ``kind`` of operation from an armored OpenPGP secret key.

    ``bad-format``: not an OpenPGP key this reader supports; ``bad-key``: a key of another kind
    than the operation needs, one the passphrase does not unlock, or one whose public part is
    not its secret part's.
    """
    try:
        if kind == "openpgp":
            return _openpgp.public_key(text)[0]
        if kind not in ("ed25519", "rsa"):
            raise KeyFailure("bad-key")
        key = _openpgp.read_secret_key(text, passphrase, _aes_cfb)
    except _openpgp.WrongPassphrase:
        raise KeyFailure("bad-key") from None
    except _openpgp.OpenPGPError:
        raise KeyFailure("bad-format") from None
    if kind == "ed25519":
        if key.algorithm not in (22, 27):
            raise KeyFailure("bad-key")
        from nacl.signing import SigningKey

        signing = SigningKey(key.secret["seed"].to_bytes(32, "big"))
        point = key.public.get("point")
        assert isinstance(point, int)
        # the key's public part is what its signatures name (the fingerprint) and what is
        # exported: a secret part of another key would sign with a key nobody can check
        if point.bit_length() > 8 * 33:
            raise KeyFailure("bad-key")
        public = point.to_bytes(33, "big")
        expected = public[1:] if key.algorithm == 27 else public  # 22: 0x40 || the point
        if not hmac.compare_digest(
            (b"" if key.algorithm == 27 else b"\x40") + bytes(signing.verify_key), expected
        ):
            raise KeyFailure("bad-key")
        return signing
    if key.algorithm not in (1, 3):
        raise KeyFailure("bad-key")
    from cryptography.hazmat.primitives.asymmetric import rsa

    n, e = key.public["n"], key.public["e"]
    assert isinstance(n, int) and isinstance(e, int)
    d, p, q = key.secret["d"], key.secret["p"], key.secret["q"]
    try:
        return rsa.RSAPrivateNumbers(
            p,
            q,
            d,
            rsa.rsa_crt_dmp1(d, p),
            rsa.rsa_crt_dmq1(d, q),
            rsa.rsa_crt_iqmp(p, q),
            rsa.RSAPublicNumbers(e, n),
        ).private_key()
    except ValueError:
        raise KeyFailure("bad-key") from None


def _ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    if len(public) != 32 or len(signature) != 64:
        return False
    try:
        VerifyKey(public).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    except Exception:  # nacl's CryptoError for a point that is not on the curve
        return False
    return True


def _rsa_verify(hash_name: str) -> Callable[[bytes, bytes, bytes], bool]:
    def verify(public: bytes, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        try:
            key = serialization.load_der_public_key(public)
        except Exception:  # not DER, not a key: a false, never an error with the input
            return False
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        algo = hashes.SHA256() if hash_name == "sha256" else hashes.SHA512()
        try:
            key.verify(signature, message, padding.PKCS1v15(), algo)
        except (InvalidSignature, ValueError):
            return False
        return True

    return verify


# --- the operations -------------------------------------------------------------------------------
# Each operation is a decoder (the field's bytes and format -> a key object, kept by the ring)
# and a function of that key object.


def _hmac_key(algorithm: str) -> Callable[[bytes, str], object]:
    """The field's key as the standard library's HMAC over a ``hashlib`` constructor, with the
    key's inner and outer pad blocks hashed once (RFC 2104's precomputation).

    Given a Python callable (not OpenSSL's name or constructor), ``hmac.new`` builds its
    pure-Python HMAC over two hashlib objects; each call then copies the two hash states and
    hashes only the data: about 1.3 µs for 100 bytes against 1.9 µs for OpenSSL's one-shot
    ``hmac.digest``, which sets the key up again on every call.
    """
    constructor = getattr(hashlib, algorithm)

    def digest_cons(data: bytes = b"") -> Any:
        return constructor(data)

    def decode(data: bytes, fmt: str) -> object:
        return hmac.new(data, digestmod=digest_cons)

    return decode


def _hmac(key: object, data: bytes) -> bytes:
    assert isinstance(key, hmac.HMAC)
    mac = key.copy()
    mac.update(data)
    return mac.digest()


def _ed25519_key(data: bytes, fmt: str) -> object:
    from nacl.signing import SigningKey

    return SigningKey(_ed25519_seed(data, fmt))


def _ed25519_sign(key: object, data: bytes) -> bytes:
    from nacl.signing import SigningKey

    assert isinstance(key, SigningKey)
    return bytes(key.sign(data).signature)


def _ed25519_public(key: object) -> bytes:
    from nacl.signing import SigningKey

    assert isinstance(key, SigningKey)
    return bytes(key.verify_key)


def _p256_sign(key: object, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.sign(data, ec.ECDSA(hashes.SHA256()))
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _p256_public(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _secp256k1_key(data: bytes, fmt: str) -> object:
    from coincurve import PrivateKey

    return PrivateKey(_secp256k1_secret(data, fmt))


def _secp256k1_sign(key: object, digest: bytes) -> bytes:
    from coincurve import PrivateKey

    assert isinstance(key, PrivateKey)
    if len(digest) != 32:
        raise KeyFailure("bad-input")
    # r || s || recovery id; RFC 6979 nonce and low s, as libsecp256k1 does by default
    return bytes(key.sign_recoverable(digest, hasher=None))


def _secp256k1_public(key: object) -> bytes:
    from coincurve import PrivateKey

    assert isinstance(key, PrivateKey)
    return bytes(key.public_key.format(compressed=False))


def _rsa_sign(pss: bool) -> Callable[[object, bytes], bytes]:
    def op(key: object, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        assert isinstance(key, rsa.RSAPrivateKey)
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            if pss
            else padding.PKCS1v15()
        )
        return key.sign(data, pad, hashes.SHA256())

    return op


def _rsa_public(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    assert isinstance(key, rsa.RSAPrivateKey)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _keccak256(data: bytes) -> bytes:
    from Crypto.Hash import keccak

    return keccak.new(data=data, digest_bits=256).digest()


#: The kinds of key, each with its decoder: the ring keeps decoded keys by kind.
_DECODERS: Final[dict[str, Callable[[bytes, str], object]]] = {
    "hmac-sha1": _hmac_key("sha1"),
    "hmac-sha256": _hmac_key("sha256"),
    "hmac-sha512": _hmac_key("sha512"),
    "hmac-sha384": _hmac_key("sha384"),
    "ed25519": _ed25519_key,
    "p256": _p256,
    "secp256k1": _secp256k1_key,
    "rsa": _rsa,
    "openpgp": lambda data, fmt: _fail("bad-format"),  # only the openpgp format makes one
}
_SIGN: Final[dict[str, tuple[str, Callable[[object, bytes], bytes]]]] = {
    "hmac-sha1": ("hmac-sha1", _hmac),
    "hmac-sha256": ("hmac-sha256", _hmac),
    "hmac-sha512": ("hmac-sha512", _hmac),
    "hmac-sha384": ("hmac-sha384", _hmac),
    "ed25519-sign": ("ed25519", _ed25519_sign),
    "p256-sign": ("p256", _p256_sign),
    "secp256k1-sign": ("secp256k1", _secp256k1_sign),
    "rsa-sign-pkcs1-sha256": ("rsa", _rsa_sign(pss=False)),
    "rsa-sign-pss-sha256": ("rsa", _rsa_sign(pss=True)),
}
_PUBLIC: Final[dict[str, tuple[str, Callable[[object], bytes]]]] = {
    "ed25519-public-key": ("ed25519", _ed25519_public),
    "p256-public-key": ("p256", _p256_public),
    "secp256k1-public-key": ("secp256k1", _secp256k1_public),
    "rsa-public-key": ("rsa", _rsa_public),
    "openpgp-public-key": ("openpgp", lambda key: key if isinstance(key, bytes) else b""),
}
_VERIFY: Final[dict[str, Callable[[bytes, bytes, bytes], bool]]] = {
    "ed25519-verify": _ed25519_verify,
    "rsa-verify-pkcs1-sha256": _rsa_verify("sha256"),
    "rsa-verify-pkcs1-sha512": _rsa_verify("sha512"),
}
_HASH: Final[dict[str, Callable[[bytes], bytes]]] = {
    "sha256": lambda d: hashlib.sha256(d).digest(),
    "sha512": lambda d: hashlib.sha512(d).digest(),
    "keccak256": _keccak256,
}
assert {
    **dict.fromkeys(_SIGN, "sign"),
    **dict.fromkeys(_PUBLIC, "public"),
    **dict.fromkeys(_VERIFY, "verify"),
    **dict.fromkeys(_HASH, "hash"),
} == KEYS_FUNCTIONS


def _fail(case: str) -> object:
    raise KeyFailure(case)


def sign_op(name: str) -> Callable[[KeyRing | None, str, int, bytes], bytes]:
    """``(ring, field, format index, data) -> output``; :class:`KeyFailure` on refusal (an
    index that is no case of ``key-format`` is ``bad-format``)."""
    kind, fn = _SIGN[name]
    decode = _DECODERS[kind]
    nformats = len(KEY_FORMATS)

    def run(ring: KeyRing | None, field: str, fmt: int, data: bytes) -> bytes:
        if ring is None:
            raise KeyFailure("no-credential")
        if not 0 <= fmt < nformats:
            raise KeyFailure("bad-format")
        return fn(ring.key(kind, field, KEY_FORMATS[fmt], decode), data)

    return run


def public_op(name: str) -> Callable[[KeyRing | None, str, int], bytes]:
    """``(ring, field, format index) -> public key``; :class:`KeyFailure` on refusal (a format
    index as for :func:`sign_op`)."""
    kind, fn = _PUBLIC[name]
    decode = _DECODERS[kind]
    nformats = len(KEY_FORMATS)

    def run(ring: KeyRing | None, field: str, fmt: int) -> bytes:
        if ring is None:
            raise KeyFailure("no-credential")
        if not 0 <= fmt < nformats:
            raise KeyFailure("bad-format")
        return fn(ring.key(kind, field, KEY_FORMATS[fmt], decode))

    return run


def verify_op(name: str) -> Callable[[bytes, bytes, bytes], bool]:
    """``(public key, message, signature) -> valid``; never raises for bad input."""
    return _VERIFY[name]


def hash_op(name: str) -> Callable[[bytes], bytes]:
    """``(data) -> digest``."""
    return _HASH[name]
