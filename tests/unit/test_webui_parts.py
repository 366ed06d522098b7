"""The web UI's parts without a server: sessions and the lockout on a fake clock, and the
forms generated from credential type definitions."""

from __future__ import annotations

from vultrino.plugins.base import CredentialTypeSpec, FieldSpec
from vultrino.server.ui.forms import FIELD_PREFIX, form_fields, submitted_fields
from vultrino.server.ui.sessions import (
    FAILURE_WINDOW_S,
    IDLE_S,
    LOCKOUT_S,
    MAX_AGE_S,
    MAX_SESSIONS,
    LoginLimiter,
    Sessions,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_when_idle_or_old_and_login_replaces_the_id() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    anon = sessions.anonymous()
    assert not anon.authenticated and sessions.get(anon.id) is anon
    logged = sessions.login(anon)
    assert logged.id != anon.id and logged.csrf != anon.csrf
    assert sessions.get(anon.id) is None and sessions.get(logged.id) is logged
    assert logged.csrf_ok(logged.csrf) and not logged.csrf_ok(anon.csrf)
    assert not logged.csrf_ok(None) and not logged.csrf_ok("")
    clock.now += IDLE_S - 1
    assert sessions.get(logged.id) is logged  # a request keeps it alive
    clock.now += IDLE_S + 1
    assert sessions.get(logged.id) is None
    busy = sessions.login(None)
    for _ in range(int(MAX_AGE_S // (IDLE_S / 2)) + 1):
        clock.now += IDLE_S / 2
        sessions.get(busy.id)
    assert sessions.get(busy.id) is None  # at most MAX_AGE_S after login, however busy
    assert sessions.get(None) is None and sessions.get("unknown") is None


def test_five_failures_in_the_window_lock_out_for_fifteen_minutes() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(4):
        assert not limiter.failed("10.0.0.1")
        clock.now += 10
    assert limiter.locked_for("10.0.0.1") == 0
    assert limiter.failed("10.0.0.1")
    assert limiter.locked_for("10.0.0.1") == LOCKOUT_S
    assert limiter.locked_for("10.0.0.2") == 0  # per client
    clock.now += LOCKOUT_S - 1
    assert limiter.locked_for("10.0.0.1") == 1
    clock.now += 1
    assert limiter.locked_for("10.0.0.1") == 0
    # failures further apart than the window never add up to a lockout
    for _ in range(10):
        assert not limiter.failed("10.0.0.3")
        clock.now += FAILURE_WINDOW_S / 4 + 1
    # a success clears the count
    for _ in range(4):
        limiter.failed("10.0.0.4")
    limiter.succeeded("10.0.0.4")
    assert not limiter.failed("10.0.0.4")


SPEC = CredentialTypeSpec(
    name="key",
    fields=(
        FieldSpec("private_key", label="Private key", type="textarea", required=True, secret=True),
        FieldSpec("passphrase", type="password"),
        FieldSpec("algorithm", type="select", options=("a", "b"), default="a", help_text="Alg"),
        FieldSpec("comment", type="text", placeholder="who"),
        FieldSpec("armored", type="checkbox"),
        FieldSpec("digits", type="number", default=6),
    ),
)


def test_form_fields_follow_the_definitions_and_never_carry_a_secret() -> None:
    previous = {"private_key": "-----BEGIN KEY-----", "passphrase": "pw", "comment": "me"}
    fields = {f.name.removeprefix(FIELD_PREFIX): f for f in form_fields(SPEC, previous)}
    pk = fields["private_key"]
    assert (pk.kind, pk.label, pk.required, pk.secret, pk.value) == (
        "textarea",
        "Private key",
        True,
        True,
        "",
    )
    assert fields["passphrase"].input_type == "password" and fields["passphrase"].value == ""
    alg = fields["algorithm"]
    assert (alg.kind, alg.options, alg.value, alg.help, alg.required) == (
        "select",
        ("a", "b"),
        "a",
        "Alg",
        False,
    )
    assert fields["comment"].value == "me" and fields["comment"].placeholder == "who"
    assert fields["armored"].kind == "checkbox"
    assert fields["digits"].input_type == "number" and fields["digits"].value == "6"
    only = [f.name for f in form_fields(SPEC, only_secret=True)]
    assert only == [FIELD_PREFIX + "private_key", FIELD_PREFIX + "passphrase"]


def test_submitted_fields() -> None:
    form = {
        FIELD_PREFIX + "private_key": "-----BEGIN KEY-----\r\nabc\r\n-----END KEY-----\r\n",
        FIELD_PREFIX + "passphrase": "",
        FIELD_PREFIX + "comment": "  hi  ",
        FIELD_PREFIX + "digits": "",
    }
    assert submitted_fields(SPEC, form) == {
        "private_key": "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
        "comment": "hi",
        "armored": "false",
    }
    assert submitted_fields(SPEC, {FIELD_PREFIX + "armored": "true"})["armored"] == "true"
    # a required field left empty is passed on, for the plugin's check to name it
    assert submitted_fields(SPEC, {})["private_key"] == ""


def test_a_flood_of_anonymous_sessions_never_pushes_out_a_logged_in_one() -> None:
    sessions = Sessions(Clock())
    admin = sessions.login(None)
    first = sessions.anonymous()
    for _ in range(MAX_SESSIONS + 10):
        sessions.anonymous()
    assert sessions.get(admin.id) is admin
    assert sessions.get(first.id) is None
