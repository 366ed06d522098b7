"""Moving a plugin's key into the host is an update users can take with their stored keys.

Through the real CLI: the ``hmac`` plugin as it was (0.1.0, the key handed to the guest; the
module kept for the benchmarks in ``benchmarks/guests/``) with a credential stored for it, then
``plugin install --force`` of the shipped 0.2.0, whose ``key`` is ``access = "host"``. The
installer accepts an update that *adds* host-only (it refuses only one that drops it), the
credential stored for 0.1.0 is used unchanged, and every answer is the same as before and as
Python's ``hmac``. This is the path of any first-party plugin that moves its key to the host:
``totp`` and ``jwt`` (0.1.0 kept as ``benchmarks/guests/{totp,jwt}_guest_key.*``) take it below,
with RFC 4226 codes and PyJWT tokens before and after.
"""

from __future__ import annotations

import hmac
import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.test_cli_host_keys import vultrino
from tests.leakcheck import LeakCheck

ROOT = Path(__file__).resolve().parents[2]
GUESTS = ROOT / "benchmarks" / "guests"
SECRET = "upgrade-webhook-secret-3f9a1c"
MESSAGES = ("", "hello", '{"event":"push"}', "ünïcödé ✓")


@pytest.fixture
def home(isolated_home: Path, tmp_path: Path, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    leakcheck.add(SECRET)
    old = tmp_path / "hmac-0.1.0"
    old.mkdir()
    shutil.copy(GUESTS / "hmac_guest_key.toml", old / "plugin.toml")
    shutil.copy(GUESTS / "vultrino_hmac_guest_key.wasm", old / "vultrino_hmac.wasm")
    for args in (["init"], ["plugin", "install", str(old)]):
        r = vultrino(*args)
        assert r.returncode == 0, r.stderr
    return isolated_home


def signatures(alias: str) -> dict[str, str]:
    out = {}
    for message in MESSAGES:
        for algorithm in ("sha256", "sha512"):
            r = vultrino(
                "request",
                alias,
                "--action",
                "sign",
                "--param",
                f"message={message}",
                "--param",
                f"algorithm={algorithm}",
                "--json",
            )
            assert r.returncode == 0, r.stderr
            assert SECRET not in r.stdout + r.stderr
            out[f"{algorithm}:{message}"] = json.loads(r.stdout)["signature"]
    return out


def test_an_update_that_moves_the_key_into_the_host_keeps_stored_credentials(home: Path) -> None:
    info = vultrino("plugin", "info", "hmac", "--json")
    assert json.loads(info.stdout)["version"] == "0.1.0"
    assert "never sees" not in vultrino("plugin", "info", "hmac").stdout
    r = vultrino(
        "add", "--alias", "hook", "--type", "plugin:hmac:hmac_key", "--field", "key=-", stdin=SECRET
    )
    assert r.returncode == 0, r.stderr
    before = signatures("hook")
    for key, signature in before.items():
        algorithm, _, message = key.partition(":")
        assert signature == hmac.new(SECRET.encode(), message.encode(), algorithm).hexdigest()

    r = vultrino("plugin", "install", "--force", str(ROOT / "plugins" / "hmac"))
    assert r.returncode == 0, r.stderr
    info = vultrino("plugin", "info", "hmac")
    assert "0.2.0" in info.stdout
    assert "this plugin never sees: key" in info.stdout
    # the credential stored for 0.1.0, unchanged, now signs through the host: the same answers
    assert signatures("hook") == before


# --- totp and jwt: the same path, with their secrets ----------------------------------------

TOTP_SECRET = "gezd gnbv gy3t qojq gezd gnbv gy3t qojq"  # RFC 4226's, as an app shows it
JWT_SECRET = "upgrade-jwt-signing-secret-long-enough-for-hs512-0123456789abcdefghij"


def _install_old(name: str, tmp_path: Path) -> None:
    """``name`` as it was (0.1.0, the secret handed to the guest), from benchmarks/guests/."""
    old = tmp_path / f"{name}-0.1.0"
    old.mkdir()
    shutil.copy(GUESTS / f"{name}_guest_key.toml", old / "plugin.toml")
    shutil.copy(GUESTS / f"vultrino_{name}_guest_key.wasm", old / f"vultrino_{name}.wasm")
    r = vultrino("plugin", "install", str(old))
    assert r.returncode == 0, r.stderr
    info = vultrino("plugin", "info", name)
    assert "0.1.0" in info.stdout and "never sees" not in info.stdout


def _upgrade(name: str) -> None:
    r = vultrino("plugin", "install", "--force", str(ROOT / "plugins" / name))
    assert r.returncode == 0, r.stderr
    info = vultrino("plugin", "info", name)
    assert "0.2.0" in info.stdout
    assert "this plugin never sees: secret" in info.stdout
    as_json = json.loads(vultrino("plugin", "info", name, "--json").stdout)
    assert as_json["version"] == "0.2.0"


def _request(alias: str, action: str, *params: str) -> dict[str, object]:
    args = [a for p in params for a in ("--param", p)]
    r = vultrino("request", alias, "--action", action, *args, "--json")
    assert r.returncode == 0, r.stderr
    for secret in (TOTP_SECRET, JWT_SECRET, TOTP_SECRET.replace(" ", "").upper()):
        assert secret not in r.stdout + r.stderr
    out: dict[str, object] = json.loads(r.stdout)
    return out


@pytest.fixture
def plain_home(isolated_home: Path, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    leakcheck.add(JWT_SECRET, TOTP_SECRET.replace(" ", "").upper())
    r = vultrino("init")
    assert r.returncode == 0, r.stderr
    return isolated_home


# RFC 4226 Appendix D, 6 digits: the TOTP code at 30 * c + 29 is HOTP(c)
RFC4226 = ("755224", "287082", "359152", "969429", "338314")


def test_totp_moves_its_secret_into_the_host_and_keeps_stored_credentials(
    plain_home: Path, tmp_path: Path
) -> None:
    _install_old("totp", tmp_path)
    for alias, algorithm in (("otp", "SHA1"), ("otp256", "SHA256")):
        r = vultrino(
            "add",
            "--alias",
            alias,
            "--type",
            "plugin:totp:totp",
            "--field",
            "secret=-",
            "--field",
            f"algorithm={algorithm}",
            stdin=TOTP_SECRET,
        )
        assert r.returncode == 0, r.stderr
        assert "never sees" not in r.stderr

    def codes() -> list[object]:
        times = [30 * c + 29 for c in range(5)] + [1111111109, 2000000000]
        return [_request(a, "code", f"time={t}") for a in ("otp", "otp256") for t in times]

    before = codes()
    assert [c["code"] for c in before[:5]] == list(RFC4226)
    _upgrade("totp")
    # the credentials stored for 0.1.0, unchanged, now get their MAC from the host
    assert codes() == before
    # and a new credential's add says the plugin never sees its secret
    r = vultrino(
        "add", "--alias", "otp2", "--type", "plugin:totp:totp", "--field", "secret=-",
        stdin=TOTP_SECRET.upper(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "this plugin never sees: secret" in r.stderr
    assert _request("otp2", "code", "time=59") == before[1]


def test_jwt_moves_its_secret_into_the_host_and_keeps_stored_credentials(
    plain_home: Path, tmp_path: Path
) -> None:
    import jwt as pyjwt

    _install_old("jwt", tmp_path)
    for alias, algorithm in (("hs256", "HS256"), ("hs384", "HS384"), ("hs512", "HS512")):
        r = vultrino(
            "add",
            "--alias",
            alias,
            "--type",
            "plugin:jwt:jwt_key",
            "--field",
            "secret=-",
            "--field",
            f"algorithm={algorithm}",
            "--field",
            "issuer=vultrino-test",
            stdin=JWT_SECRET,
        )
        assert r.returncode == 0, r.stderr
    claims = {"iss": "vultrino-test", "sub": "ada", "iat": 1700000000, "exp": 4102444800}
    tokens = {
        alg: pyjwt.encode(claims, JWT_SECRET, algorithm=alg) for alg in ("HS256", "HS384", "HS512")
    }

    def answers() -> list[object]:
        out: list[object] = []
        for alias in ("hs256", "hs384", "hs512"):
            for token in (*tokens.values(), tokens["HS256"][:-2] + "AA"):
                out.append(_request(alias, "verify", f"token={token}"))
        return out

    before = answers()
    assert [a["valid"] for a in before[:4]] == [True, False, False, False]
    assert before[5]["valid"] is True and before[10]["valid"] is True
    _upgrade("jwt")
    assert answers() == before
    # minting (reads the clock): a token the stored key verifies, for every algorithm
    for alias, alg in (("hs256", "HS256"), ("hs384", "HS384"), ("hs512", "HS512")):
        minted = _request(alias, "mint", "ttl=120", "subject=ada")
        token = str(minted["token"])
        assert pyjwt.get_unverified_header(token)["alg"] == alg
        got = pyjwt.decode(token, JWT_SECRET, algorithms=[alg], issuer="vultrino-test")
        assert got["sub"] == "ada" and got["exp"] - got["iat"] == 120


def test_add_on_a_terminal_says_totp_and_jwt_never_see_the_secret(plain_home: Path) -> None:
    """Installed by name (0.2.0), ``add`` on a pty says the plugin never sees ``secret`` before
    the hidden prompt; the stored secrets then give RFC 4226's code and a PyJWT-checked token."""
    import jwt as pyjwt

    from tests.e2e.test_cli_paste import Terminal

    for name in ("totp", "jwt"):
        r = vultrino("plugin", "install", name)
        assert r.returncode == 0, r.stderr
    for alias, ctype, secret in (
        ("otp", "plugin:totp:totp", TOTP_SECRET),
        ("signer", "plugin:jwt:jwt_key", JWT_SECRET),
    ):
        t = Terminal("add", "--alias", alias, "--type", ctype)
        t.expect(r"this plugin never sees: secret")
        t.expect(r"Secret[^:]*: ")
        t.type(secret + "\n")
        assert t.finish() == 0, t.seen
        assert secret not in t.seen
    assert _request("otp", "code", "time=59") == {"code": RFC4226[1], "expires_in": 1}
    token = str(_request("signer", "mint", "ttl=60")["token"])
    assert pyjwt.decode(token, JWT_SECRET, algorithms=["HS256"])["exp"]
    types = json.loads(vultrino("types", "--json").stdout)
    never = {t["plugin"]: t["never_sees"] for t in types if t.get("plugin") in ("totp", "jwt")}
    assert never == {"totp": ["secret"], "jwt": ["secret"]}
