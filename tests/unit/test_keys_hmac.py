"""The host's HMAC (``vultrino.runtime._keys``) keeps each key's pad blocks hashed once per ring
and copies them per call: it must give OpenSSL's HMAC byte for byte, for keys shorter than,
equal to and longer than the hash's block size (a longer key is hashed first, RFC 2104), and a
cached key must serve many calls and messages alike."""

from __future__ import annotations

import hmac

import pytest

from vultrino.runtime._keys import KeyRing, sign_op
from vultrino.runtime.wit import KEY_FORMATS

RAW = KEY_FORMATS.index("raw")
HEX = KEY_FORMATS.index("hex")


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_hmac_matches_openssl_for_every_key_length(algorithm: str) -> None:
    op = sign_op(f"hmac-{algorithm}")
    for size in (1, 20, 63, 64, 65, 127, 128, 129, 300):
        key = bytes((i * 7 + size) % 256 for i in range(size))
        ring = KeyRing({"k": key.hex()})
        for message in (b"", b"m", b"x" * 1000, bytes(range(256))):
            assert op(ring, "k", HEX, message) == hmac.digest(key, message, algorithm)
        # the cached key again, after other messages: no state carried between calls
        assert op(ring, "k", HEX, b"m") == hmac.digest(key, b"m", algorithm)


def test_rfc4231_case_2_and_one_ring_for_several_algorithms() -> None:
    ring = KeyRing({"k": "Jefe"})
    data = b"what do ya want for nothing?"
    assert sign_op("hmac-sha256")(ring, "k", RAW, data).hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    # the same field for another hash: its own decoded key, not the first one's
    assert sign_op("hmac-sha512")(ring, "k", RAW, data) == hmac.digest(b"Jefe", data, "sha512")
    assert sign_op("hmac-sha1")(ring, "k", RAW, data) == hmac.digest(b"Jefe", data, "sha1")


def test_base32_reads_what_python_encodes_and_what_apps_show() -> None:
    """``base32`` (world 1.3.0) decodes RFC 4648 base32 as ``base64.b32decode`` does, and also
    lower case, no padding, and spaces or dashes between groups; anything else is bad-format."""
    import base64
    import random

    from vultrino.runtime._keys import KeyFailure, key_bytes

    rng = random.Random(4648)
    for size in range(1, 70):
        data = rng.randbytes(size)
        text = base64.b32encode(data).decode()
        assert key_bytes(text, "base32") == data
        shown = " ".join(text.rstrip("=").lower()[i : i + 4] for i in range(0, len(text), 4))
        assert key_bytes(shown.strip(), "base32") == data
        assert key_bytes("-".join(text[i : i + 4] for i in range(0, len(text), 4)), "base32") == (
            data
        )
    for bad in ("GEZ1", "GEZDGNBV!", "====", "", "  ", "GEZ DGN\u00c9"):
        with pytest.raises(KeyFailure) as caught:
            key_bytes(bad, "base32")
        assert caught.value.case == "bad-format"
    ring = KeyRing({"k": "gezd gnbv gy3t qojq gezd gnbv gy3t qojq"})
    base32 = KEY_FORMATS.index("base32")
    assert sign_op("hmac-sha384")(ring, "k", base32, b"m") == hmac.digest(
        b"12345678901234567890", b"m", "sha384"
    )
