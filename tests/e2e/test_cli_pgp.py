"""The first-party ``pgp`` plugin and ``vultrino gpg`` through the real CLI, checked with the
real ``gpg`` and ``git``.

A throwaway GnuPG home makes an Ed25519 key (passphrase-protected) and an RSA-3072 key (no
passphrase); each is exported armored and added as a ``plugin:pgp:pgp_key`` credential with
``vultrino add``. Then: ``gpg --verify`` accepts the plugin's detached (armored and binary) and
cleartext signatures; ``get_public_key`` of the protected key is byte for byte what ``gpg
--export`` writes and verifies in a fresh keyring; the plugin verifies gpg's own detached
signatures and reports a changed text or another key's signature as invalid; ``git commit -S``
with ``gpg.program`` pointing at the wrapper makes commits ``git verify-commit`` accepts.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_cli_paste import HANG_GUARD_S, PASSWORD
from tests.leakcheck import LeakCheck

ROOT = Path(__file__).resolve().parents[2]
ED_PASSPHRASE = "correct pgp passphrase 7c1e"
DATA = "release v1.2.3 approved\nsecond line\n"

pytestmark = pytest.mark.skipif(
    shutil.which("gpg") is None or shutil.which("git") is None, reason="needs gpg and git"
)


@dataclass
class Keys:
    gnupghome: Path
    ed_secret: str
    rsa_secret: str
    ed_public: bytes
    ed_fpr: str
    rsa_fpr: str


def _gpg(home: Path, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["gpg", "--batch", "--pinentry-mode", "loopback", *args],
        input=data,
        env={**os.environ, "GNUPGHOME": str(home)},
        capture_output=True,
        timeout=120,
        check=False,
    )


def _fingerprint(home: Path, uid: str) -> str:
    out = _gpg(home, "--with-colons", "--fingerprint", uid).stdout.decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    """Two keys made by gpg in a throwaway home (a short path: gpg-agent's socket must fit)."""
    home = Path(tempfile.mkdtemp(prefix="vgpg"))
    home.chmod(0o700)
    try:
        made = _gpg(
            home, "--passphrase", ED_PASSPHRASE, "--quick-gen-key",
            "Ed Signer <ed@example.com>", "ed25519", "sign", "0",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        made = _gpg(
            home, "--passphrase", "", "--quick-gen-key",
            "Rsa Signer <rsa@example.com>", "rsa3072", "sign", "0",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        ed = _gpg(home, "--passphrase", ED_PASSPHRASE, "--armor", "--export-secret-keys", "ed@")
        rsa = _gpg(home, "--passphrase", "", "--armor", "--export-secret-keys", "rsa@")
        assert b"PRIVATE KEY BLOCK" in ed.stdout and b"PRIVATE KEY BLOCK" in rsa.stdout
        yield Keys(
            gnupghome=home,
            ed_secret=ed.stdout.decode(),
            rsa_secret=rsa.stdout.decode(),
            ed_public=_gpg(home, "--export", "ed@").stdout,
            ed_fpr=_fingerprint(home, "ed@"),
            rsa_fpr=_fingerprint(home, "rsa@"),
        )
    finally:
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"],
            env={**os.environ, "GNUPGHOME": str(home)},
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


def vultrino(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        input=stdin,
        env={**os.environ, "VULTRINO_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


@pytest.fixture
def home(isolated_home: Path, tmp_path: Path, keys: Keys, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    leakcheck.add(PASSWORD, ED_PASSPHRASE, keys.ed_secret, keys.rsa_secret)
    (tmp_path / "ed.asc").write_text(keys.ed_secret)
    (tmp_path / "rsa.asc").write_text(keys.rsa_secret)
    (tmp_path / "ed.pass").write_text(ED_PASSPHRASE)
    for args in (
        ["init"],
        ["plugin", "install", "pgp"],
        ["add", "--alias", "ed-key", "--type", "plugin:pgp:pgp_key",
         "--field", f"private_key=@{tmp_path / 'ed.asc'}",
         "--field", f"passphrase=@{tmp_path / 'ed.pass'}"],
        ["add", "--alias", "rsa-key", "--type", "plugin:pgp:pgp_key",
         "--field", f"private_key=@{tmp_path / 'rsa.asc'}"],
    ):  # fmt: skip
        r = vultrino(*args)
        assert r.returncode == 0, r.stderr
        if args[0] == "add":
            assert "this plugin never sees: private_key, passphrase" in r.stderr
    return isolated_home


def _request(alias: str, action: str, *params: str) -> subprocess.CompletedProcess[str]:
    args = ["request", alias, "--action", action]
    for p in params:
        args += ["--param", p]
    return vultrino(*args, "--json")


def _gpg_verify(keys: Keys, signature: bytes, data: bytes) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory() as d:
        sig, dat = Path(d) / "s.sig", Path(d) / "d.txt"
        sig.write_bytes(signature)
        dat.write_bytes(data)
        return _gpg(keys.gnupghome, "--status-fd", "1", "--verify", str(sig), str(dat))


@pytest.mark.parametrize(("alias", "fpr"), [("ed-key", "ed_fpr"), ("rsa-key", "rsa_fpr")])
def test_gpg_verifies_the_plugins_detached_signatures(
    home: Path, keys: Keys, alias: str, fpr: str
) -> None:
    r = _request(alias, "sign", f"data={DATA}")
    assert r.returncode == 0, r.stderr
    armored = json.loads(r.stdout)
    assert armored.startswith("-----BEGIN PGP SIGNATURE-----\n")
    checked = _gpg_verify(keys, armored.encode(), DATA.encode())
    assert checked.returncode == 0, checked.stderr
    assert f"VALIDSIG {getattr(keys, fpr)}".encode() in checked.stdout
    # armor = false: base64 of the binary packet, which gpg verifies as it is
    r = _request(alias, "sign", f"data={DATA}", "armor=false")
    assert r.returncode == 0, r.stderr
    binary = base64.b64decode(json.loads(r.stdout))
    assert binary[0] == 0xC2  # a new-format signature packet, no armor
    assert _gpg_verify(keys, binary, DATA.encode()).returncode == 0
    # and not for other data
    assert _gpg_verify(keys, binary, b"release v9.9.9 approved\n").returncode != 0


def test_gpg_verifies_a_cleartext_signature(home: Path, keys: Keys) -> None:
    message = "I approve\n-- a line that starts with a dash  \nend"
    r = _request("ed-key", "sign_cleartext", f"message={message}")
    assert r.returncode == 0, r.stderr
    signed = json.loads(r.stdout)
    assert signed.startswith("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n")
    assert "\n- -- a line" in signed  # dash-escaped
    checked = _gpg(keys.gnupghome, "--status-fd", "1", "--verify", data=signed.encode())
    assert checked.returncode == 0, checked.stderr
    assert f"VALIDSIG {keys.ed_fpr}".encode() in checked.stdout
    out = _gpg(keys.gnupghome, "--decrypt", data=signed.encode()).stdout.decode()
    # the text as signed: trailing whitespace is not part of a cleartext signature
    assert out.replace("\r\n", "\n").rstrip("\n") == message.replace("  \n", "\n")


def test_public_key_of_a_protected_key_is_gpgs_export(
    home: Path, keys: Keys, tmp_path: Path
) -> None:
    r = _request("ed-key", "get_public_key")
    assert r.returncode == 0, r.stderr
    armored = json.loads(r.stdout)
    assert armored.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    dearmored = subprocess.run(
        ["gpg", "--dearmor"], input=armored.encode(), capture_output=True, check=True
    ).stdout
    assert dearmored == keys.ed_public
    raw = _request("ed-key", "get_public_key", "armor=false")
    assert base64.b64decode(json.loads(raw.stdout)) == keys.ed_public
    # a keyring that only imported it verifies the plugin's signature
    fresh = Path(tempfile.mkdtemp(prefix="vgpf"))
    fresh.chmod(0o700)
    try:
        assert _gpg(fresh, "--import", data=armored.encode()).returncode == 0
        sig = json.loads(_request("ed-key", "sign", "data=hello").stdout)
        (tmp_path / "s.asc").write_text(sig)
        (tmp_path / "d").write_text("hello")
        ok = _gpg(fresh, "--verify", str(tmp_path / "s.asc"), str(tmp_path / "d"))
        assert ok.returncode == 0, ok.stderr
    finally:
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"],
            env={**os.environ, "GNUPGHOME": str(fresh)},
            capture_output=True,
            check=False,
        )
        shutil.rmtree(fresh, ignore_errors=True)


def test_the_plugin_verifies_gpgs_own_signatures(home: Path, keys: Keys, tmp_path: Path) -> None:
    data = tmp_path / "d.txt"
    data.write_text(DATA)
    for uid, alias, fpr, passphrase in (
        ("ed@", "ed-key", keys.ed_fpr, ED_PASSPHRASE),
        ("rsa@", "rsa-key", keys.rsa_fpr, ""),
    ):
        armored = _gpg(
            keys.gnupghome, "--passphrase", passphrase, "-u", uid, "--armor",
            "--detach-sign", "-o", "-", str(data),
        ).stdout.decode()  # fmt: skip
        binary = _gpg(
            keys.gnupghome, "--passphrase", passphrase, "-u", uid, "--detach-sign",
            "-o", "-", str(data),
        ).stdout  # fmt: skip
        for signature in (armored, base64.b64encode(binary).decode()):
            r = _request(alias, "verify", f"data={DATA}", f"signature={signature}")
            assert r.returncode == 0, r.stderr
            verdict = json.loads(r.stdout)
            assert verdict["valid"] is True, verdict
            assert verdict["fingerprint"] == fpr
            assert verdict["key_id"] == fpr[-16:]
            assert verdict["created"].endswith("Z")
            assert verdict["reason"] is None
        # the same signature over other data
        r = _request(alias, "verify", "data=something else", f"signature={armored}")
        verdict = json.loads(r.stdout)
        assert verdict["valid"] is False
        assert "does not match" in verdict["reason"]
    # a signature by the other key
    other = _gpg(
        keys.gnupghome, "--passphrase", "", "-u", "rsa@", "--armor", "--detach-sign",
        "-o", "-", str(data),
    ).stdout.decode()  # fmt: skip
    verdict = json.loads(_request("ed-key", "verify", f"data={DATA}", f"signature={other}").stdout)
    assert verdict["valid"] is False
    assert keys.rsa_fpr in verdict["reason"]
    # a signature whose bytes were changed (a flipped bit in the signature value)
    raw = bytearray(
        _gpg(
            keys.gnupghome, "--passphrase", ED_PASSPHRASE, "-u", "ed@", "--detach-sign",
            "-o", "-", str(data),
        ).stdout
    )  # fmt: skip
    raw[-5] ^= 0x01
    r = _request("ed-key", "verify", f"data={DATA}", f"signature={base64.b64encode(raw).decode()}")
    assert json.loads(r.stdout)["valid"] is False


def test_bad_input_and_a_wrong_passphrase_are_clear_errors(
    home: Path, keys: Keys, tmp_path: Path
) -> None:
    r = _request("ed-key", "verify", "data=x", "signature=not a signature!")
    assert r.returncode != 0
    assert "neither an armored PGP SIGNATURE nor base64" in r.stderr
    (tmp_path / "wrong").write_text("not the passphrase")
    added = vultrino(
        "add", "--alias", "ed-wrong", "--type", "plugin:pgp:pgp_key",
        "--field", f"private_key=@{tmp_path / 'ed.asc'}",
        "--field", f"passphrase=@{tmp_path / 'wrong'}",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    r = _request("ed-wrong", "sign", "data=x")
    assert r.returncode != 0
    assert "passphrase does not unlock the secret key" in r.stderr
    # the public key needs no passphrase
    assert _request("ed-wrong", "get_public_key").returncode == 0
    (tmp_path / "junk").write_text("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n")
    vultrino(
        "add", "--alias", "junk", "--type", "plugin:pgp:pgp_key",
        "--field", f"private_key=@{tmp_path / 'junk'}",
    )  # fmt: skip
    r = _request("junk", "sign", "data=x")
    assert r.returncode != 0
    assert "not an ASCII-armored OpenPGP secret key" in r.stderr


def _wrapper(tmp_path: Path) -> Path:
    """What the ``vultrino-gpg-wrapper`` console script runs, as an executable for git."""
    script = tmp_path / "vultrino-gpg-wrapper"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from vultrino.cli.gpg import main\nmain()\n"
    )
    script.chmod(0o755)
    return script


def _git(repo: Path, keys: Keys, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        env={
            **os.environ,
            "GNUPGHOME": str(keys.gnupghome),
            "VULTRINO_PASSWORD": PASSWORD,
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(repo.parent),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


def test_git_signs_commits_through_the_wrapper(home: Path, keys: Keys, tmp_path: Path) -> None:
    wrapper = _wrapper(tmp_path)
    repo = tmp_path / "repo"
    assert _git(tmp_path, keys, "init", "-q", str(repo)).returncode == 0
    for key, value in (("user.name", "Signer"), ("user.email", "signer@example.com")):
        assert _git(repo, keys, "config", key, value).returncode == 0
    (repo / "f.txt").write_text("one\n")
    assert _git(repo, keys, "add", "f.txt").returncode == 0
    # user.signingkey names the credential
    made = _git(
        repo, keys, "-c", f"gpg.program={wrapper}", "-c", "user.signingkey=ed-key",
        "commit", "-q", "-S", "-m", "signed with the stored Ed25519 key",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    checked = _git(repo, keys, "verify-commit", "-v", "HEAD")
    assert checked.returncode == 0, checked.stderr
    assert "Good signature" in checked.stderr
    assert keys.ed_fpr in checked.stderr
    # VULTRINO_GPG_CREDENTIAL names it; git passes the committer as -u
    (repo / "f.txt").write_text("two\n")
    made = _git(
        repo, keys, "-c", f"gpg.program={wrapper}", "commit", "-q", "-a", "-S", "-m", "rsa",
        VULTRINO_GPG_CREDENTIAL="rsa-key",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    checked = _git(repo, keys, "verify-commit", "-v", "HEAD")
    assert checked.returncode == 0, checked.stderr
    assert keys.rsa_fpr in checked.stderr
    # git's own verification through the wrapper (it hands --verify to the real gpg)
    shown = _git(repo, keys, "-c", f"gpg.program={wrapper}", "log", "--show-signature", "-2")
    assert shown.stdout.count("Good signature") == 2, shown.stdout + shown.stderr
    # a commit whose signature no longer matches is rejected
    body = _git(repo, keys, "cat-file", "commit", "HEAD").stdout.replace("rsa\n", "tampered\n")
    forged = subprocess.run(
        ["git", "-C", str(repo), "hash-object", "-t", "commit", "-w", "--stdin"],
        input=body, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert _git(repo, keys, "verify-commit", forged).returncode != 0


def test_vultrino_gpg_speaks_gpgs_status_protocol(home: Path, keys: Keys) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", "gpg", "--status-fd=2", "-bsau", "ed-key"],
        input=DATA,
        env={**os.environ, "VULTRINO_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("-----BEGIN PGP SIGNATURE-----")
    created = next(line for line in r.stderr.splitlines() if "SIG_CREATED" in line).split()
    assert created[:6] == ["[GNUPG:]", "SIG_CREATED", "D", "22", "8", "00"]
    assert created[7] == keys.ed_fpr
    assert _gpg_verify(keys, r.stdout.encode(), DATA.encode()).returncode == 0
    # --credential overrides -u; no credential at all is a clear error
    r = vultrino("gpg", "--credential", "rsa-key", "-bsau", "someone", stdin="x")
    assert r.returncode == 0, r.stderr
    r = vultrino("gpg", "-bsa", stdin="x")
    assert r.returncode == 2
    assert "no credential to sign with" in r.stderr
    r = vultrino("gpg", "--encrypt", stdin="x")
    assert r.returncode == 2
    assert "--encrypt is not supported" in r.stderr


def _armor(data: bytes) -> str:
    from vultrino.runtime._openpgp import crc24

    text = base64.b64encode(data).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    crc = base64.b64encode(crc24(data).to_bytes(3, "big")).decode()
    return "\n".join(
        ["-----BEGIN PGP PRIVATE KEY BLOCK-----", "", *lines, f"={crc}",
         "-----END PGP PRIVATE KEY BLOCK-----", ""]
    )  # fmt: skip


def _other_public_part(armored: str) -> str:
    """The key with one byte of its primary key's public material changed; the secret part
    (encrypted, and checked only over the secret integers) is left as it was."""
    from vultrino.runtime._openpgp import dearmor, packets

    data = dearmor(armored)
    (tag, header, body), *rest = packets(data)
    assert tag == 5 and body[5] in (1, 22)  # a secret key packet: RSA or EdDSA
    # RSA: a byte inside n; EdDSA (22): the point's last byte (after the OID and MPI length)
    at = 7 + 60 if body[5] == 1 else 7 + body[6] + 2 + 32
    changed = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]
    return _armor(header + changed + b"".join(h + b for _, h, b in rest))


@pytest.mark.parametrize("which", ["ed", "rsa"])
def test_a_key_whose_public_part_is_not_its_secret_part_is_refused(
    home: Path, keys: Keys, tmp_path: Path, which: str
) -> None:
    """Found in review: an Ed25519 key whose public part was another key's signed with its
    secret seed anyway, under the fingerprint of the public part, so gpg called every
    signature BAD; such a key is refused before it signs (RSA keys already were, by
    `cryptography`'s consistency check)."""
    secret = keys.ed_secret if which == "ed" else keys.rsa_secret
    (tmp_path / "odd.asc").write_text(_other_public_part(secret))
    args = ["add", "--alias", f"odd-{which}", "--type", "plugin:pgp:pgp_key",
            "--field", f"private_key=@{tmp_path / 'odd.asc'}"]  # fmt: skip
    if which == "ed":
        args += ["--field", f"passphrase=@{tmp_path / 'ed.pass'}"]
    added = vultrino(*args)
    assert added.returncode == 0, added.stderr
    r = _request(f"odd-{which}", "sign", "data=x")
    assert r.returncode != 0, r.stdout
    assert "BEGIN PGP SIGNATURE" not in r.stdout
    assert "no usable secret for the primary key" in r.stderr, r.stderr
