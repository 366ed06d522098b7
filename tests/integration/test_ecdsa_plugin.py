"""The first-party ``ecdsa`` plugin as shipped, on every engine installed here.

Its ``private_key`` is host-only: the guest gets nil and signs through the host's keys
interface. Every result is checked against what does not depend on the plugin: published
vectors (Hardhat's well-known development accounts and their EIP-55 addresses, viem's
``signMessage`` documentation, EIP-55's own test cases) and recovery of the signer's address
from the signature with coincurve (``PublicKey.from_signature_and_message``), with the
Keccak-256 of pycryptodome.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from coincurve import PublicKey
from Crypto.Hash import keccak

from tests.integration.test_first_party_plugins import (
    call,
    error,
    ok,
    runtime,  # noqa: F401 - the engine fixture
    shipped_module_path,
)
from vultrino.runtime import PluginModule, WasmRuntime

# Hardhat's (and Anvil's) development accounts #0..#2, printed by `npx hardhat node`: private key
# and EIP-55 checksummed address (https://hardhat.org/hardhat-network/docs/reference).
HARDHAT = [
    (
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    ),
    (
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    ),
    (
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    ),
]
# viem's signMessage documentation (https://viem.sh/docs/accounts/signMessage): account #0
# above signs "hello world" (EIP-191 personal_sign; RFC 6979 makes it deterministic).
VIEM_HELLO_WORLD = (
    "0xa461f509887bd19e312c0c58467ce8ff8e300d3c1a90b608a760c5b80318eaf1"
    "5fe57c96f9175d6cd4daad4663763baa7e78836e067d0163e9a2ccf2ff753f5b1b"
)
# EIP-55's test cases (https://eips.ethereum.org/EIPS/eip-55), for the reference checksum below.
EIP55_CASES = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
KEY = HARDHAT[0][0]


@pytest.fixture(scope="module")
def ecdsa(runtime: WasmRuntime) -> Iterator[PluginModule]:  # noqa: F811 - the fixture above
    module = runtime.load(shipped_module_path("ecdsa").read_bytes(), plugin="ecdsa")
    yield module
    module.close()


def run(module: PluginModule, action: str, key: str | None = KEY, **params: Any) -> Any:
    fields = None if key is None else {"private_key": key, "testnet": False}
    return call(module, action, params, "ecdsa_key", fields)


def keccak256(data: bytes) -> bytes:
    return keccak.new(data=data, digest_bits=256).digest()


def eip55(address: bytes) -> str:
    """The reference EIP-55 checksum, as the EIP writes it."""
    lower = address.hex()
    nibbles = keccak256(lower.encode()).hex()
    pairs = zip(lower, nibbles[: len(lower)], strict=True)
    return "0x" + "".join(c.upper() if int(n, 16) >= 8 else c for c, n in pairs)


def recover(signed: dict[str, Any], digest: bytes) -> str:
    """The signer's address, recovered from ``signature`` by coincurve."""
    sig = bytes.fromhex(signed["signature"][2:])
    assert len(sig) == 65
    assert sig[64] == signed["v"] in (27, 28)
    assert signed["recovery_id"] == signed["v"] - 27
    assert sig[:32].hex() == signed["r"][2:] and sig[32:64].hex() == signed["s"][2:]
    assert int.from_bytes(sig[32:64], "big") <= N // 2  # low s
    assert signed["digest"] == "0x" + digest.hex()
    public = PublicKey.from_signature_and_message(
        sig[:64] + bytes([sig[64] - 27]), digest, hasher=None
    )
    return eip55(keccak256(public.format(compressed=False)[1:])[12:])


def test_the_reference_checksum_matches_eip55() -> None:
    for case in EIP55_CASES:
        assert eip55(bytes.fromhex(case[2:])) == case


@pytest.mark.parametrize(("key", "address"), HARDHAT)
def test_get_address_gives_the_published_checksummed_address(
    ecdsa: PluginModule, key: str, address: str
) -> None:
    out = ok(run(ecdsa, "get_address", key))
    assert out["address"] == address
    assert out["testnet"] is False
    public = bytes.fromhex(out["public_key"][2:])
    assert len(public) == 65 and public[0] == 4
    assert eip55(keccak256(public[1:])[12:]) == address
    # the key without 0x, in upper case, with spaces around: the same account
    assert ok(run(ecdsa, "get_address", f"  {key[2:].upper()} \n"))["address"] == address


def test_get_address_checksums_any_key_as_eip55_says(ecdsa: PluginModule) -> None:
    for i in range(20):
        key = "0x" + hashlib.sha256(b"ecdsa-%d" % i).hexdigest()
        out = ok(run(ecdsa, "get_address", key))
        public = bytes.fromhex(out["public_key"][2:])
        assert out["address"] == eip55(keccak256(public[1:])[12:])


def test_get_address_reports_testnet(ecdsa: PluginModule) -> None:
    for flag in (True, "true"):
        fields = {"private_key": KEY, "testnet": flag}
        out = ok(call(ecdsa, "get_address", {}, "ecdsa_key", fields))
        assert out["testnet"] is True
    bad = {"private_key": KEY, "testnet": "maybe"}
    error(call(ecdsa, "get_address", {}, "ecdsa_key", bad), "invalid_credential")


def test_sign_message_matches_the_published_eip191_signature(ecdsa: PluginModule) -> None:
    out = ok(run(ecdsa, "sign_message", message="hello world"))
    assert out["signature"] == VIEM_HELLO_WORLD
    digest = keccak256(b"\x19Ethereum Signed Message:\n11hello world")
    assert recover(out, digest) == HARDHAT[0][1]
    # viem's `{ raw: '0x68656c6c6f20776f726c64' }` form: the same bytes written in hex
    raw = ok(run(ecdsa, "sign_message", message="0x68656c6c6f20776f726c64", format="hex"))
    assert raw["signature"] == VIEM_HELLO_WORLD


@pytest.mark.parametrize("key_and_address", HARDHAT)
def test_sign_message_recovers_to_the_signer(
    ecdsa: PluginModule, key_and_address: tuple[str, str]
) -> None:
    key, address = key_and_address
    for message in ("", "Sign in to example.org", "ünïcödé ✓ " * 30, "0x1234"):
        raw = message.encode()
        digest = keccak256(b"\x19Ethereum Signed Message:\n" + str(len(raw)).encode() + raw)
        out = ok(run(ecdsa, "sign_message", key, message=message))
        assert recover(out, digest) == address


@pytest.mark.parametrize("hash_name", ["keccak256", "sha256"])
@pytest.mark.parametrize("fmt", ["hex", "utf8", "base64"])
def test_sign_hashes_the_data_and_recovers_to_the_signer(
    ecdsa: PluginModule, hash_name: str, fmt: str
) -> None:
    seen_v = set()
    for i in range(12):
        data = f"order #{i}: buy 1 ETH".encode()
        written = {
            "hex": "0x" + data.hex(),
            "utf8": data.decode(),
            "base64": base64.b64encode(data).decode(),
        }[fmt]
        digest = keccak256(data) if hash_name == "keccak256" else hashlib.sha256(data).digest()
        out = ok(run(ecdsa, "sign", data=written, format=fmt, hash=hash_name))
        assert recover(out, digest) == HARDHAT[0][1]
        seen_v.add(out["v"])
    assert seen_v == {27, 28}  # both recovery ids occur, and each one recovers


def test_sign_defaults_to_hex_data_and_keccak256(ecdsa: PluginModule) -> None:
    out = ok(run(ecdsa, "sign", data="deadbeef"))
    assert recover(out, keccak256(bytes.fromhex("deadbeef"))) == HARDHAT[0][1]


def test_sign_with_hash_none_signs_a_32_byte_digest_as_is(ecdsa: PluginModule) -> None:
    digest = keccak256(b"an EIP-712 hash, computed by the caller")
    out = ok(run(ecdsa, "sign", data=digest.hex(), hash="none"))
    assert recover(out, digest) == HARDHAT[0][1]
    # personal_sign is sign over the prefixed message's Keccak-256: the same signature
    prefixed = keccak256(b"\x19Ethereum Signed Message:\n11hello world")
    assert ok(run(ecdsa, "sign", data=prefixed.hex(), hash="none"))["signature"] == (
        VIEM_HELLO_WORLD
    )
    for size in (0, 31, 33, 64):
        message = error(run(ecdsa, "sign", data="ab" * size, hash="none"), "invalid_params")
        assert "32 bytes" in message and f"got {size} bytes" in message


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"data": "xyz"}, "not hex"),
        ({"data": "abc"}, "not hex"),
        ({"data": "***", "format": "base64"}, "not base64"),
        ({"data": "ab", "format": "ascii"}, "format must be"),
        ({"data": "ab", "hash": "md5"}, "hash must be"),
        ({}, "data"),
    ],
)
def test_sign_refuses_bad_params(ecdsa: PluginModule, params: dict[str, Any], needle: str) -> None:
    assert needle in error(run(ecdsa, "sign", **params), "invalid_params")


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        ("0xnot-a-key", "not hex"),
        ("0x1234", "32 bytes"),
        ("00" * 32, "32 bytes"),  # zero is no key
        (f"{N:064x}", "curve order"),
        ("ff" * 33, "32 bytes"),
        ("", "not set"),
    ],
)
def test_bad_keys_are_refused_without_quoting_them(
    ecdsa: PluginModule, key: str, needle: str
) -> None:
    for action, params in (
        ("sign", {"data": "00"}),
        ("get_address", {}),
        ("sign_message", {"message": "m"}),
    ):
        message = error(run(ecdsa, action, key, **params), "invalid_credential")
        assert needle in message, (action, message)
        if key:
            assert key not in message and key[2:] not in message


def test_no_credential_is_refused(ecdsa: PluginModule) -> None:
    error(run(ecdsa, "get_address", None), "invalid_credential")


def test_the_guest_never_receives_the_key(ecdsa: PluginModule) -> None:
    """The manifest keeps the key in the host: the request the guest decodes carries nil."""
    from vultrino.plugins.manifest import load_manifest

    manifest = load_manifest(shipped_module_path("ecdsa").parent / "plugin.toml")
    (ctype,) = manifest.credential_types
    assert ctype.host_fields == ("private_key",)


def test_the_instance_keeps_working_after_errors(ecdsa: PluginModule) -> None:
    for _ in range(30):
        error(run(ecdsa, "sign", "0x1234", data="00"), "invalid_credential")
        error(run(ecdsa, "sign", data="00", hash="none"), "invalid_params")
        assert ok(run(ecdsa, "sign_message", message="hello world"))["signature"] == (
            VIEM_HELLO_WORLD
        )
