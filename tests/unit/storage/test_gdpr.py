"""The GDPR store over a real migrated database: consent history and the latest decision,
and erasure folding usage into per-tenant aggregates (twice on one day: added, not lost)."""

from __future__ import annotations

from pathlib import Path

from rbee.api.gdpr import Consent
from rbee.api.identity import KeyInfo, Tenant, User
from rbee.api.quotas import UsageRow
from rbee.storage.db import Database, connect
from rbee.storage.gdpr import ERASED, GdprStore
from rbee.storage.identity import IdentityStore
from rbee.storage.quotas import QuotaStore


def _people(db: Database, *names: str) -> None:
    ids = IdentityStore(db)
    ids.add_tenant(Tenant(id="ten_1", name="acme", labels={}, created_at=0.0))
    for n in names:
        ids.add_user(User(id=f"usr_{n}", tenant_id="ten_1", name=n, email=None,
                          created_at=0.0))
        ids.add_key(KeyInfo(id=f"key{n}", user_id=f"usr_{n}", tenant_id="ten_1", name="",
                            role="user", models=None, max_priority="interactive",
                            created_at=0.0, expires_at=None, revoked_at=None), "0" * 64)


def test_the_latest_decision_per_purpose_counts_and_history_is_kept(tmp_path: Path) -> None:
    store = GdprStore(connect(tmp_path / "q.db"))
    for at, (user, purpose, granted) in enumerate((
            ("usr_a", "processing", True), ("usr_b", "processing", True),
            ("usr_a", "processing", False), ("usr_b", "marketing", False),
            ("usr_c", "processing", False), ("usr_c", "processing", True))):
        store.add_consent(Consent(subject=user, purpose=purpose, granted=granted,
                                  at=float(at), by_key=None))
    assert store.granted("processing") == {"usr_b", "usr_c"}
    assert store.granted("marketing") == set()
    assert [(c.purpose, c.granted) for c in store.consents("usr_a")] == [
        ("processing", True), ("processing", False)]


def test_erasure_folds_usage_into_aggregates_without_the_person(tmp_path: Path) -> None:
    db = connect(tmp_path / "q.db")
    _people(db, "a", "b", "c")
    quotas = QuotaStore(db)
    quotas.add_usage([UsageRow(day="2026-12-01", tenant_id="ten_1", key_id=f"key{n}",
                               model="m", requests=r, prompt_tokens=10 * r, cost=0.5 * r)
                      for n, r in (("a", 1), ("b", 2), ("c", 4))])
    store = GdprStore(db)
    assert store.erase("usr_a").usage_rows == 1
    assert store.erase("usr_b").keys == 1
    rows = {r.key_id: r for r in quotas.usage()}
    assert set(rows) == {ERASED, "keyc"}
    assert (rows[ERASED].requests, rows[ERASED].prompt_tokens, rows[ERASED].cost) == \
        (3, 30, 1.5)
    assert db.query("SELECT id FROM users") == [("usr_c",)]
    store.compact()
    assert b"usr_a" not in (tmp_path / "q.db").read_bytes()
