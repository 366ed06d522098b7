"""The shared approvals inbox (vultrino/server/inbox.py over vultrino/store/pg_approvals.py)
against a real PostgreSQL: two inboxes on one database stand for two replicas."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from vultrino.errors import ApprovalNotFoundError, PermissionDeniedError
from vultrino.policy.approval import ApprovalRequest
from vultrino.server.inbox import Inbox, Seal, Waiting
from vultrino.store import KdfParams, create_store, verify_signature
from vultrino.store.credentials import CredentialStore
from vultrino.store.pg_approvals import ApprovalTable

REQUEST = ApprovalRequest("bot", "echo", "echo", "echo-one", None, '{"message": "ship it"}')


@pytest.fixture
def store(pg_url: str) -> Iterator[CredentialStore]:
    with create_store(pg_url, "approvals-password-1", KdfParams.minimal()) as s:
        yield s


def _seal(store: CredentialStore) -> Seal:
    def check(message: bytes, sig: bytes) -> bool:
        key = store.audit_public_key()
        return key is not None and verify_signature(key, message, sig)

    return Seal(lambda m: store.sign_audit_head(m)[0], check)


class Replica:
    def __init__(self, url: str, store: CredentialStore, wait_s: float = 30.0) -> None:
        self.decided: list[Waiting] = []
        self.table = ApprovalTable(url)
        self.inbox = Inbox(
            wait_s, on_decided=self.decided.append, shared=self.table, seal=_seal(store)
        )
        self.table.on_notice = self.inbox.notice

    def hold(self, key_id: str | None = None) -> tuple[threading.Thread, dict[str, Any]]:
        out: dict[str, Any] = {}

        def run() -> None:
            out["outcome"] = self.inbox.wait(REQUEST, "bot-key", key_id)

        t = threading.Thread(target=run)
        t.start()
        return t, out

    def close(self) -> None:
        self.inbox.close()
        self.table.close()


def _waiting(replica: Replica, count: int) -> list[dict[str, Any]]:
    for _ in range(500):
        rows = replica.inbox.waiting()
        if len(rows) >= count:
            return rows
        threading.Event().wait(0.01)
    return replica.inbox.waiting()


def test_held_on_b_approved_on_a_once_and_a_second_decision_is_refused(
    pg_url: str, store: CredentialStore
) -> None:
    a, b = Replica(pg_url, store), Replica(pg_url, store)
    try:
        t, out = b.hold(key_id="k-bot")
        [row] = _waiting(a, 1)
        assert row["agent"] == "bot" and row["key"] == "bot-key"
        assert row["summary"] == REQUEST.summary and "ship it" in row["message"]
        assert 0 < row["expires_in_s"] <= 30
        with pytest.raises(PermissionDeniedError, match="made with itself"):
            a.inbox.decide(row["id"], approve=True, by="key:bot-key", by_key="k-bot")
        item = a.inbox.decide(row["id"], approve=True, by="key:ops", by_key="k-ops")
        assert item.outcome == "granted" and item.request == REQUEST
        t.join(10)
        assert out["outcome"] == "granted"
        with pytest.raises(ApprovalNotFoundError, match="already approved by key:ops"):
            b.inbox.decide(row["id"], approve=False, by="key:other", by_key=None)
        with pytest.raises(ApprovalNotFoundError, match="never there"):
            b.inbox.decide("nosuchid", approve=False, by="key:other", by_key=None)
        # audited once: by the replica where the person decided
        assert [w.id for w in a.decided] == [row["id"]] and b.decided == []
        assert a.inbox.waiting() == [] and b.inbox.waiting() == []
    finally:
        a.close()
        b.close()


def test_two_people_deciding_at_once_one_wins(pg_url: str, store: CredentialStore) -> None:
    a, b = Replica(pg_url, store), Replica(pg_url, store)
    try:
        t, out = a.hold()
        [row] = _waiting(b, 1)
        results: list[str] = []
        barrier = threading.Barrier(2)

        def decide(r: Replica, approve: bool) -> None:
            barrier.wait()
            try:
                results.append(
                    r.inbox.decide(row["id"], approve=approve, by="p", by_key=None).outcome or ""
                )
            except ApprovalNotFoundError:
                results.append("refused")

        ts = [threading.Thread(target=decide, args=(r, ok)) for r, ok in ((a, True), (b, False))]
        for x in ts:
            x.start()
        for x in ts:
            x.join(10)
        t.join(10)
        assert sorted(results) in (["granted", "refused"], ["declined", "refused"])
        assert out["outcome"] == next(r for r in results if r != "refused")
        assert len(a.decided) + len(b.decided) == 1
    finally:
        a.close()
        b.close()


def test_a_lost_notice_is_covered_by_the_poll(pg_url: str, store: CredentialStore) -> None:
    a, b = Replica(pg_url, store), Replica(pg_url, store)
    b.table.on_notice = None  # b hears no NOTIFY at all
    try:
        t, out = b.hold()
        [row] = _waiting(a, 1)
        a.inbox.decide(row["id"], approve=False, by="p", by_key=None)
        t.join(10)
        assert out["outcome"] == "declined"
    finally:
        a.close()
        b.close()


def test_a_grant_written_without_the_store_key_releases_nothing(
    pg_url: str, store: CredentialStore
) -> None:
    b = Replica(pg_url, store)
    try:
        t, out = b.hold()
        [row] = _waiting(b, 1)
        with psycopg.connect(pg_url, autocommit=True) as conn:  # someone with the database only
            conn.execute(
                "UPDATE vultrino_approvals SET decision = 'granted', decided_by = 'mallory', "
                "sig = %s WHERE id = %s",
                (b"\0" * 64, row["id"]),
            )
            conn.execute("SELECT pg_notify('vultrino_approvals', %s)", (row["id"],))
        t.join(10)
        assert out["outcome"] == "unavailable"
    finally:
        b.close()


def test_a_call_nobody_decides_expires_and_stays_undecidable(
    pg_url: str, store: CredentialStore
) -> None:
    a, b = Replica(pg_url, store, wait_s=0.5), Replica(pg_url, store)
    try:
        t, out = a.hold()
        [row] = _waiting(b, 1)
        t.join(10)
        assert out["outcome"] == "expired"
        assert b.inbox.waiting() == []
        with pytest.raises(ApprovalNotFoundError, match="expired before anyone decided"):
            b.inbox.decide(row["id"], approve=True, by="p", by_key=None)
    finally:
        a.close()
        b.close()


def test_a_stopping_replica_refuses_its_waiting_calls(pg_url: str, store: CredentialStore) -> None:
    a, b = Replica(pg_url, store), Replica(pg_url, store)
    try:
        t, out = a.hold()
        [row] = _waiting(b, 1)
        a.inbox.close()
        t.join(10)
        assert out["outcome"] == "unavailable"
        assert b.inbox.waiting() == []
        with pytest.raises(ApprovalNotFoundError, match="server stopped"):
            b.inbox.decide(row["id"], approve=True, by="p", by_key=None)
    finally:
        a.close()
        b.close()
