"""Keys that stay in the host (world 1.2.0, `interface keys` of wit/vultrino-plugin.wit; 1.3.0
adds OpenPGP keys, signature checks, base32 keys and HMAC-SHA384).

Each function names a field of the credential the host bound to the current call; Vultrino
decodes the field's value (`fmt`: "raw", "hex", "base64", "pem", "openpgp" or "base32"), runs the
operation and hands back only its output, as bytes. A field declared `access = "host"` in plugin.toml reaches
the plugin as None and can be used only this way. See docs/plugins/host-keys.md.

    from vultrino_pdk import keys
    mac = keys.hmac_sha256("secret", b"message")

A refusal raises `keys.KeyError` (an `InvalidCredential`, or `InvalidParams` for bad-input)
whose `case` is the WIT case name ("no-credential", "unknown-field", "bad-format", "bad-key",
"bad-input"); it never carries any part of a key.

The checks (`ed25519_verify`, `rsa_verify_pkcs1_sha256`, `rsa_verify_pkcs1_sha512`) take the
public key itself, not a field, and return True or False.
"""

from wit_world.imports import keys as _host
from componentize_py_types import Err

from vultrino_pdk import InvalidCredential, InvalidParams

__all__ = [
    "KeyError",
    "ed25519_public_key",
    "ed25519_sign",
    "hmac_sha1",
    "hmac_sha256",
    "hmac_sha384",
    "hmac_sha512",
    "ed25519_verify",
    "keccak256",
    "openpgp_public_key",
    "p256_public_key",
    "p256_sign",
    "rsa_public_key",
    "rsa_sign_pkcs1_sha256",
    "rsa_sign_pss_sha256",
    "rsa_verify_pkcs1_sha256",
    "rsa_verify_pkcs1_sha512",
    "secp256k1_public_key",
    "secp256k1_sign",
    "sha256",
    "sha512",
]

_FORMATS = {
    "raw": _host.KeyFormat.RAW,
    "hex": _host.KeyFormat.HEX,
    "base64": _host.KeyFormat.BASE64,
    "pem": _host.KeyFormat.PEM,
    "openpgp": _host.KeyFormat.OPENPGP,
    "base32": _host.KeyFormat.BASE32,
}


class KeyError(InvalidCredential):  # noqa: A001 - keys.KeyError, as the WIT names it
    """The host refused a key operation; `case` names why."""

    def __init__(self, case):
        super().__init__(f"the host refused the key operation: {case}")
        self.case = case


class _BadInput(KeyError, InvalidParams):
    code = "invalid_params"


def _case(value):
    name = getattr(value, "name", str(value)).lower().replace("_", "-")
    return _BadInput(name) if name == "bad-input" else KeyError(name)


def _call(function, *args):
    try:
        return bytes(function(*args))
    except Err as exc:
        raise _case(exc.value) from None


def _sign(name):
    function = getattr(_host, name)

    def sign(field, data, fmt="raw"):
        return _call(function, field, _FORMATS[fmt], bytes(data))

    sign.__name__ = name
    return sign


def _public(name):
    function = getattr(_host, name)

    def public(field, fmt="raw"):
        return _call(function, field, _FORMATS[fmt])

    public.__name__ = name
    return public


hmac_sha1 = _sign("hmac_sha1")
hmac_sha256 = _sign("hmac_sha256")
hmac_sha512 = _sign("hmac_sha512")
hmac_sha384 = _sign("hmac_sha384")
ed25519_sign = _sign("ed25519_sign")
p256_sign = _sign("p256_sign")
secp256k1_sign = _sign("secp256k1_sign")
rsa_sign_pkcs1_sha256 = _sign("rsa_sign_pkcs1_sha256")
rsa_sign_pss_sha256 = _sign("rsa_sign_pss_sha256")
ed25519_public_key = _public("ed25519_public_key")
p256_public_key = _public("p256_public_key")
secp256k1_public_key = _public("secp256k1_public_key")
rsa_public_key = _public("rsa_public_key")
openpgp_public_key = _public("openpgp_public_key")


def _verify(name):
    function = getattr(_host, name)

    def verify(public_key, message, signature):
        return bool(function(bytes(public_key), bytes(message), bytes(signature)))

    verify.__name__ = name
    return verify


ed25519_verify = _verify("ed25519_verify")
rsa_verify_pkcs1_sha256 = _verify("rsa_verify_pkcs1_sha256")
rsa_verify_pkcs1_sha512 = _verify("rsa_verify_pkcs1_sha512")


def sha256(data):
    return bytes(_host.sha256(bytes(data)))


def sha512(data):
    return bytes(_host.sha512(bytes(data)))


def keccak256(data):
    """Keccak-256 as Ethereum uses it (not SHA3-256)."""
    return bytes(_host.keccak256(bytes(data)))
