"""The small parts around OpenPGP keys: the manifest's ``passphrase_field``, the armor checksum,
and how ``vultrino gpg`` reads gpg's command line."""

from __future__ import annotations

import base64
import re

import pytest

from vultrino.cli import gpg
from vultrino.plugins.manifest import parse_manifest
from vultrino.runtime import _openpgp

MANIFEST = """
[plugin]
name = "p"
version = "1.0.0"
wasm_module = "p.wasm"

[[credential_types]]
name = "k"

[[credential_types.fields]]
name = "private_key"
type = "textarea"
secret = true
access = "{key_access}"
passphrase_field = "{target}"

[[credential_types.fields]]
name = "passphrase"
type = "password"
secret = true
access = "{pass_access}"

[[actions]]
name = "sign"
"""


def _manifest(
    key_access: str = "host", target: str = "passphrase", pass_access: str = "host"
) -> str:
    return MANIFEST.format(key_access=key_access, target=target, pass_access=pass_access)


def test_passphrase_field_names_a_host_only_sibling() -> None:
    m = parse_manifest(_manifest())
    assert m.credential_types[0].fields[0].passphrase_field == "passphrase"
    assert m.warnings == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "nope"}, r'"nope" is not another field of this type'),
        ({"target": "private_key"}, "is not another field of this type"),
        ({"pass_access": "guest"}, 'the passphrase field "passphrase" must be host-only too'),
        ({"key_access": "guest"}, "only for a host-only key field"),
    ],
)
def test_a_wrong_passphrase_field_is_an_error_with_its_key_path(
    kwargs: dict[str, str], message: str
) -> None:
    from vultrino.errors import ManifestError

    with pytest.raises(ManifestError) as caught:
        parse_manifest(_manifest(**kwargs))
    text = str(caught.value)
    assert "credential_types[0].fields[0].passphrase_field" in text
    assert re.search(message, text), text


def test_crc24_is_the_rfc_4880_checksum() -> None:
    # RFC 4880 6.1: the CRC of no data is the initial value; gpg's armor of a known block
    assert _openpgp.crc24(b"") == 0xB704CE
    assert _openpgp.crc24(b"123456789") == 0x21CF02  # the CRC-24/OPENPGP check value


def test_the_reader_refuses_what_is_not_a_secret_key() -> None:
    body = base64.b64encode(b"\xc2\x01\x04").decode()  # a signature packet, not a key
    crc = base64.b64encode(_openpgp.crc24(b"\xc2\x01\x04").to_bytes(3, "big")).decode()
    text = (
        f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{body}\n={crc}\n"
        "-----END PGP PRIVATE KEY BLOCK-----\n"
    )
    with pytest.raises(_openpgp.OpenPGPError, match="does not start with a secret key packet"):
        _openpgp.read_secret_key(text, None, None)
    with pytest.raises(_openpgp.OpenPGPError, match="not an ASCII-armored OpenPGP secret key"):
        _openpgp.read_secret_key("-----BEGIN PGP PUBLIC KEY BLOCK-----", None, None)


@pytest.mark.parametrize(
    "argv",
    [
        ["--status-fd=2", "-bsau", "KEY"],
        ["--status-fd", "2", "-b", "-s", "-a", "-u", "KEY"],
        ["--status-fd=2", "-bsauKEY"],
        ["--status-fd=2", "--detach-sign", "--armor", "--local-user", "KEY"],
    ],
)
def test_gits_signing_command_lines(argv: list[str]) -> None:
    args = gpg.parse(argv)
    assert (args.sign, args.detach, args.armor, args.verify) == (True, True, True, False)
    assert (args.user, args.status_fd) == ("KEY", 2)


def test_gits_verify_command_line() -> None:
    args = gpg.parse(["--keyid-format=long", "--status-fd=1", "--verify", "/tmp/sig", "-"])
    assert args.verify and args.status_fd == 1 and args.files == ["/tmp/sig", "-"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-bsau"], "-u needs a value"),
        (["--status-fd=x", "-bsa"], "--status-fd takes a number"),
        (["-e"], "-e is not supported"),
        (["--symmetric"], "--symmetric is not supported"),
    ],
)
def test_what_the_wrapper_does_not_do_is_said(argv: list[str], message: str) -> None:
    with pytest.raises(gpg.GpgUsageError, match=message):
        gpg.parse(argv)


def test_sig_created_reads_the_signature() -> None:
    # a v4 signature packet: type 0, EdDSA (22), SHA-256 (8), created 0x01020304, fingerprint
    fpr = bytes(range(20))
    hashed = bytes([5, 2, 1, 2, 3, 4]) + bytes([22, 33, 4]) + fpr
    body = bytes([4, 0, 22, 8]) + len(hashed).to_bytes(2, "big") + hashed + bytes(4)
    packet = bytes([0xC2, len(body)]) + body
    armored = (
        "-----BEGIN PGP SIGNATURE-----\n\n"
        + base64.b64encode(packet).decode()
        + "\n=AAAA\n-----END PGP SIGNATURE-----\n"
    )
    assert gpg.sig_created(armored) == f"SIG_CREATED D 22 8 00 {0x01020304} {fpr.hex().upper()}"
