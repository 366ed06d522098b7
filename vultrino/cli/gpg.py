"""``vultrino gpg`` (and the ``vultrino-gpg-wrapper`` console script): what ``git`` runs as
``gpg.program`` to sign commits and tags with a stored PGP key.

git runs ``PROGRAM --status-fd=2 -bsau KEYID`` with the payload on stdin and reads the armored
detached signature from stdout and ``[GNUPG:] SIG_CREATED ...`` from the status descriptor.
The signature comes from the first-party ``pgp`` plugin's ``sign`` action, through the one
pipeline like every credential use (policy, audit); the key never leaves the store, and the
plugin never holds it either (its key fields are host-only).

Which credential: ``--credential ALIAS`` (for a direct call), else ``VULTRINO_GPG_CREDENTIAL``,
else the key id git passes with ``-u`` (``user.signingkey``), taken as a credential alias or id.
Verification (``--verify``, what ``git verify-commit`` and ``git log --show-signature`` run)
needs no secret: it is handed to the real ``gpg`` (``VULTRINO_GPG_PROGRAM``, default ``gpg``)
with the same arguments.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from vultrino.cli._common import HomeOpt, err

#: The plugin and action that sign.
PLUGIN, ACTION = "pgp", "sign"
CREDENTIAL_ENV = "VULTRINO_GPG_CREDENTIAL"
PROGRAM_ENV = "VULTRINO_GPG_PROGRAM"

#: Options that take a value, as gpg spells them (long form, without ``--``).
_VALUED = {"status-fd", "local-user", "keyid-format", "default-key", "output", "digest-algo"}
#: gpg options git may pass that change nothing here.
_IGNORED = {"no-tty", "batch", "yes", "armor", "sign", "detach-sign", "textmode"}


class GpgUsageError(Exception):
    """The arguments are not a signing request this wrapper understands."""


@dataclass
class GpgArgs:
    """What a gpg command line asks for."""

    sign: bool = False
    detach: bool = False
    armor: bool = False
    verify: bool = False
    user: str | None = None
    status_fd: int | None = None
    output: str | None = None
    files: list[str] = field(default_factory=list)


def parse(argv: list[str]) -> GpgArgs:
    """gpg's options, including bundled short flags (``-bsau KEYID``)."""
    out = GpgArgs()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            out.files.extend(argv[i:])
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name in _VALUED and not eq:
                if i >= len(argv):
                    raise GpgUsageError(f"--{name} needs a value")
                value, i = argv[i], i + 1
            if name == "status-fd":
                try:
                    out.status_fd = int(value)
                except ValueError:
                    raise GpgUsageError(f"--status-fd takes a number, not {value!r}") from None
            elif name in ("local-user", "default-key"):
                out.user = value
            elif name == "output":
                out.output = value
            elif name == "verify":
                out.verify = True
            elif name in ("sign", "detach-sign"):
                out.sign = True
                out.detach = out.detach or name == "detach-sign"
                out.armor = out.armor
            elif name == "armor":
                out.armor = True
            elif name not in _IGNORED and name not in _VALUED:
                raise GpgUsageError(
                    f"--{name} is not supported: this wrapper makes detached signatures "
                    "(-bsau KEYID) and hands --verify to the real gpg"
                )
            continue
        if arg.startswith("-") and len(arg) > 1:
            flags = arg[1:]
            for j, flag in enumerate(flags):
                if flag == "b":
                    out.detach = out.sign = True
                elif flag == "s":
                    out.sign = True
                elif flag == "a":
                    out.armor = True
                elif flag in ("u", "o"):
                    rest = flags[j + 1 :]
                    if rest:
                        value = rest
                    elif i < len(argv):
                        value, i = argv[i], i + 1
                    else:
                        raise GpgUsageError(f"-{flag} needs a value")
                    if flag == "u":
                        out.user = value
                    else:
                        out.output = value
                    break
                else:
                    raise GpgUsageError(
                        f"-{flag} is not supported: this wrapper makes detached signatures "
                        "(-bsau KEYID) and hands --verify to the real gpg"
                    )
            continue
        out.files.append(arg)
    return out


def _status(fd: int | None, line: str) -> None:
    if fd is None:
        return
    # like gpg, a status descriptor that is not open is not an error of the signing
    with contextlib.suppress(OSError):
        os.write(fd, f"[GNUPG:] {line}\n".encode())


def sig_created(armored: str) -> str:
    """``SIG_CREATED D <pk algo> <hash algo> 00 <time> <fingerprint>`` of a v4 signature."""
    lines = [
        line.strip()
        for line in armored.strip().splitlines()[1:-1]
        if line.strip() and ":" not in line and not line.startswith("=")
    ]
    raw = base64.b64decode("".join(lines))
    # new-format packet header: tag byte, then a one-, two- or five-octet length
    at = 2 if raw[1] < 192 else 3 if raw[1] < 224 else 6
    body = raw[at:]
    sig_type, pk_algo, hash_algo = body[1], body[2], body[3]
    hashed = body[6 : 6 + int.from_bytes(body[4:6], "big")]
    created, fingerprint = 0, ""
    k = 0
    while k < len(hashed):
        size = hashed[k]
        kind, value = hashed[k + 1] & 0x7F, hashed[k + 2 : k + 1 + size]
        if kind == 2:
            created = int.from_bytes(value, "big")
        elif kind == 33:
            fingerprint = value[1:].hex().upper()
        k += 1 + size
    return f"SIG_CREATED D {pk_algo} {hash_algo} {sig_type:02x} {created} {fingerprint}"


def _verify(argv: list[str]) -> int:
    program = os.environ.get(PROGRAM_ENV) or "gpg"
    found = shutil.which(program)
    if found is None:
        err(
            f"vultrino gpg: --verify needs the real gpg, and {program!r} is not on PATH "
            f"(install gnupg, or name it in {PROGRAM_ENV})"
        )
        return 2
    # the data (stdin) and the status descriptor are passed on as they are
    return subprocess.run([found, *argv], check=False, close_fds=False).returncode


def _sign(args: GpgArgs, credential: str | None, home: Any) -> int:
    from vultrino.cli._common import open_vultrino
    from vultrino.errors import VultrinoError

    alias = credential or os.environ.get(CREDENTIAL_ENV) or args.user
    if not alias:
        err(
            "vultrino gpg: no credential to sign with: set "
            f"{CREDENTIAL_ENV}=ALIAS, or git config user.signingkey ALIAS (the alias or id of "
            "a plugin:pgp:pgp_key credential)"
        )
        return 2
    payload = sys.stdin.buffer.read()
    try:
        data = payload.decode("utf-8")
    except UnicodeDecodeError:
        err("vultrino gpg: the data to sign is not UTF-8 text; the pgp plugin signs text only")
        return 2
    _status(args.status_fd, "BEGIN_SIGNING H8")
    try:
        with open_vultrino(home) as v:
            signature = v.execute(
                alias,
                ACTION,
                {"data": data, "armor": True},
                from_cli=True,
                plugin=PLUGIN,
                source="cli",
            )
    except VultrinoError as exc:
        err(f"vultrino gpg: signing with {alias!r} failed: {exc}")
        return exc.exit_code or 2
    if not isinstance(signature, str) or "BEGIN PGP SIGNATURE" not in signature:
        err(f"vultrino gpg: {alias!r} did not give an OpenPGP signature (is it a pgp_key?)")
        return 2
    if args.armor:
        out = signature.encode()
    else:  # binary, as gpg writes without -a
        body = [
            line
            for line in signature.strip().splitlines()[1:-1]
            if line and ":" not in line and not line.startswith("=")
        ]
        out = base64.b64decode("".join(body))
    if args.output and args.output != "-":
        with open(args.output, "wb") as fh:
            fh.write(out)
    else:
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()
    _status(args.status_fd, sig_created(signature))
    return 0


def gpg(
    ctx: typer.Context,
    credential: Annotated[
        str | None,
        typer.Option(
            "--credential",
            help=f"The pgp_key credential to sign with (default: ${CREDENTIAL_ENV}, else -u).",
        ),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Sign like gpg for git (gpg.program): -bsau KEYID, data on stdin, signature on stdout.

    The credential is --credential, else $VULTRINO_GPG_CREDENTIAL, else the -u KEYID as an
    alias; --verify is handed to the real gpg.

    Example: git config gpg.program vultrino-gpg-wrapper; git config user.signingkey my-pgp-key
    """
    raise typer.Exit(run(list(ctx.args), credential, home))


def run(argv: list[str], credential: str | None = None, home: Any = None) -> int:
    """One gpg invocation; the exit status."""
    try:
        args = parse(argv)
    except GpgUsageError as exc:
        err(f"vultrino gpg: {exc}")
        return 2
    if args.verify:
        return _verify(argv)
    if not (args.sign and args.detach):
        err(
            "vultrino gpg: only detached signing (-bsau KEYID, as git runs it) and --verify are "
            "supported"
        )
        return 2
    return _sign(args, credential, home)


def main() -> None:
    """The ``vultrino-gpg-wrapper`` console script: ``vultrino gpg`` with gpg's arguments."""
    sys.exit(run(sys.argv[1:]))
