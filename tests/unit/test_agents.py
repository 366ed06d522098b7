"""The agent policy model: profiles, globs, rates, tokens, the sealed section, audit queries."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from vultrino import audit
from vultrino._msgpack import packb
from vultrino.errors import (
    AgentExistsError,
    AgentNotFoundError,
    AgentValidationError,
    ConfigError,
    StoreCorruptError,
)
from vultrino.policy import AgentProfile, RateLimiter, hash_token, new_token, parse_rate
from vultrino.store import Credential, CredentialStore, KdfParams, _sealing
from vultrino.store.credentials import decode_sections

# --- rates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("60/min", 60, 60.0),
        ("5/s", 5, 1.0),
        ("5/sec", 5, 1.0),
        ("1000/day", 1000, 86400.0),
        ("10/5min", 10, 300.0),
        ("3 / hours", 3, 3600.0),
        ("2/h", 2, 3600.0),
    ],
)
def test_rates_parse(text: str, count: int, period: float) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.period) == (count, period)


@pytest.mark.parametrize("text", ["", "60", "60/", "/min", "0/min", "60/ms", "60/fortnight", "x/s"])
def test_bad_rates_say_what_is_expected(text: str) -> None:
    with pytest.raises(AgentValidationError, match=r"N/UNIT|at least 1"):
        parse_rate(text)


def test_token_bucket_allows_a_burst_then_refills_evenly() -> None:
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    rate = parse_rate("3/min")
    assert [limiter.take("a", rate) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a", rate)
    assert wait == pytest.approx(20.0)  # one token every 20 s
    assert limiter.take("b", rate) == 0.0  # buckets are per agent
    now[0] += 19.0
    assert limiter.take("a", rate) > 0
    now[0] += 1.5
    assert limiter.take("a", rate) == 0.0
    assert limiter.take("a", rate) > 0
    now[0] += 3600
    assert [limiter.take("a", rate) for _ in range(3)] == [0.0, 0.0, 0.0]  # capped at the burst
    assert limiter.take("a", rate) > 0


def test_a_changed_rate_starts_a_fresh_bucket() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.take("a", parse_rate("1/h")) == 0.0
    assert limiter.take("a", parse_rate("1/h")) > 0
    assert limiter.take("a", parse_rate("5/h")) == 0.0


# --- profiles --------------------------------------------------------------------------------


def test_profile_decisions() -> None:
    p = AgentProfile.build(
        "ci-bot",
        credentials=["github*", "npm"],
        tools=["http_*"],
        actions=["request", "pgp-signing:*"],
        approve=["pgp_sign_*", "http:request"],
    )
    assert p.sees_credential("github") and p.sees_credential("github-ro")
    assert p.sees_credential("npm") and not p.sees_credential("npm2")
    assert not p.sees_credential("GITHUB")  # case-sensitive, like aliases
    assert p.sees_tool("http_request") and not p.sees_tool("pgp_sign_cleartext")
    assert p.sees_tool("list_credentials")  # always
    assert p.allows_action("http", "request")
    assert p.allows_action("pgp-signing", "sign_cleartext")
    assert not p.allows_action("totp", "code")
    assert p.needs_approval("pgp-signing", "sign", ["pgp_sign_cleartext"])
    assert p.needs_approval("http", "request")
    assert not p.needs_approval("totp", "code", ["totp_code"])


def test_nothing_is_granted_unless_named() -> None:
    p = AgentProfile.build("empty")
    assert not p.sees_credential("anything")
    assert not p.sees_tool("http_request")
    assert p.sees_tool("list_credentials")
    assert p.allows_action("http", "request")  # actions default to any (tools/creds gate)
    assert AgentProfile.build("none", actions=[]).allows_action("http", "request") is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Has Space"}, "agent name"),
        ({"name": "UPPER"}, "agent name"),
        ({"name": "-dash"}, "agent name"),
        ({"name": "x" * 65}, "agent name"),
        ({"name": "ok", "credentials": [""]}, "--credential"),
        ({"name": "ok", "tools": ["a\nb"]}, "--tool"),
        ({"name": "ok", "allow": ["ftp://x/*"]}, "--allow"),
        ({"name": "ok", "rate": "lots"}, "N/UNIT"),
    ],
)
def test_bad_profile_options_name_the_option(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(AgentValidationError, match=message):
        AgentProfile.build(**kwargs)  # type: ignore[arg-type]


def test_allow_patterns_are_canonical() -> None:
    p = AgentProfile.build(
        "a", allow=["get HTTPS://API.Example.com/v1/*", "GET https://api.example.com/v1/*"]
    )
    assert p.allow == ("GET https://api.example.com/v1/*",)


def test_tokens_are_random_and_verified_by_digest() -> None:
    token = new_token()
    assert token.startswith("vagent_") and len(token) > 40
    assert new_token() != token
    p = AgentProfile.build("a", token_hash=hash_token(token))
    assert p.verify_token(token)
    assert not p.verify_token(token + "x")
    assert not p.verify_token("")
    assert token not in json.dumps(p.to_record())
    assert not AgentProfile.build("b").verify_token(token)  # no digest: nothing verifies


def test_record_round_trip_and_a_malformed_record_grants_nothing() -> None:
    p = AgentProfile.build("a", credentials=["x*"], tools=["t"], rate="5/min", approve=["t"])
    assert AgentProfile.from_record(p.to_record()) == p
    bad = {**p.to_record(), "credentials": "x*"}
    with pytest.raises(AgentValidationError, match="malformed"):
        AgentProfile.from_record(bad)


# --- the sealed store section ----------------------------------------------------------------


def _store(tmp_path: Path) -> CredentialStore:
    return CredentialStore.create(tmp_path / "credentials.enc", "pw", KdfParams.minimal())


def test_profiles_live_sealed_and_survive_other_writes(tmp_path: Path) -> None:
    s = _store(tmp_path)
    rec = AgentProfile.build("bot", credentials=["gh"], token_hash=hash_token("t")).to_record()
    assert s.put_agent(rec) is None
    s.add(Credential(alias="gh", type="api_key", fields={"key": "v"}))
    s.rekey("pw2")
    s.close()
    raw = (tmp_path / "credentials.enc").read_bytes()
    assert b"bot" not in raw and b"sha256" not in raw  # sealed, not plain
    s2 = CredentialStore.open(tmp_path / "credentials.enc", "pw2")
    assert [r["name"] for r in s2.agent_records()] == ["bot"]
    assert s2.agent_records()[0]["credentials"] == ["gh"]
    with pytest.raises(AgentExistsError, match="already exists"):
        s2.put_agent(rec)
    s2.put_agent({**rec, "credentials": ["other"]}, replace=True)
    assert s2.agent_records()[0]["credentials"] == ["other"]
    assert s2.remove_agent("bot")["name"] == "bot"
    with pytest.raises(AgentNotFoundError, match="agent list"):
        s2.remove_agent("bot")
    assert s2.agent_records() == []
    assert [c.alias for c in s2.credentials()] == ["gh"]


def test_another_process_sees_profile_changes(tmp_path: Path) -> None:
    a = _store(tmp_path)
    b = CredentialStore.open(tmp_path / "credentials.enc", "pw")
    a.put_agent({"name": "x"})
    assert [r["name"] for r in b.agent_records()] == ["x"]
    b.add(Credential(alias="c", type="api_key", fields={}))  # b's write keeps a's profile
    assert [r["name"] for r in a.agent_records()] == ["x"]


def test_a_store_written_before_profiles_reads_as_having_none(tmp_path: Path) -> None:
    header = _sealing.new_header(KdfParams.minimal(), b"s" * 16)
    old = packb({"header": header.raw, "credentials": []})  # no "agents" key at all
    records, agents = decode_sections(old, header, "old")
    assert records == {} and agents == {}


@pytest.mark.parametrize(
    "agents",
    [{"x": 1}, [1], [{"name": ""}], [{"name": "a"}, {"name": "a"}], [{1: "a"}]],
)
def test_a_malformed_agent_section_is_corrupt(agents: object) -> None:
    header = _sealing.new_header(KdfParams.minimal(), b"s" * 16)
    doc = packb({"header": header.raw, "credentials": [], "agents": agents})
    with pytest.raises(StoreCorruptError):
        decode_sections(doc, header, "store")


# --- audit queries ---------------------------------------------------------------------------


def _log(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n[1]\n")


def test_audit_query_filters(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    old = (now - timedelta(hours=3)).isoformat(timespec="milliseconds")
    new = (now - timedelta(minutes=5)).isoformat(timespec="milliseconds")
    log = tmp_path / "audit.log"
    _log(
        log,
        [
            {"ts": old, "agent": "bot", "alias": "gh", "outcome": "ok"},
            {"ts": new, "agent": "bot", "alias": "gh", "outcome": "denied"},
            {"ts": new, "agent": None, "alias": "npm", "outcome": "error"},
        ],
    )
    assert len(audit.query(log)) == 3  # damaged lines are skipped
    assert [r["outcome"] for r in audit.query(log, agent="bot")] == ["ok", "denied"]
    assert [r["alias"] for r in audit.query(log, agent="-")] == ["npm"]
    assert [r["outcome"] for r in audit.query(log, alias="gh", since="1h")] == ["denied"]
    assert [r["outcome"] for r in audit.query(log, outcome="error")] == ["error"]
    since = (now - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(audit.query(log, since=since)) == 3
    assert [r["alias"] for r in audit.query(log, limit=1)] == ["npm"]
    assert audit.query(log, limit=0) == []
    assert audit.query(tmp_path / "absent.log") == []
    with pytest.raises(ConfigError, match="outcome"):
        audit.query(log, outcome="maybe")


def test_since_forms() -> None:
    now = datetime(2026, 1, 31, 12, tzinfo=timezone.utc)
    assert audit.parse_since("1h", now=now) == datetime(2026, 1, 31, 11, tzinfo=timezone.utc)
    assert audit.parse_since("30m", now=now) == datetime(2026, 1, 31, 11, 30, tzinfo=timezone.utc)
    assert audit.parse_since("2d", now=now).day == 29
    assert audit.parse_since("2026-01-30") == datetime(2026, 1, 30, tzinfo=timezone.utc)
    assert audit.parse_since("2026-01-30T10:00:00Z").hour == 10
    with pytest.raises(ConfigError, match="duration"):
        audit.parse_since("yesterday")
