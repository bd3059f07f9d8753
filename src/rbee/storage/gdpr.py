"""What the queen holds about one person, found and erased by their user id (GDPR).

Jobs and stored Responses carry the user who made them (migration 8); consents are one row
per decision. Erasure is one transaction: the person's jobs (their events cascade), stored
Responses, consents, per-key limits and the user row (their keys cascade) go, script
versions they saved no longer name their key, and their keys' usage rows are folded into
one row per (day, tenant, model) under the key id `ERASED` — the tenant's totals stay
right, nobody is named. `compact` then rewrites the file so deleted rows leave no bytes
behind (free pages, the WAL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rbee.api.gdpr import Consent
from rbee.api.quotas import USAGE_COLUMNS
from rbee.storage.db import Database

ERASED = "erased"  # the key id usage rows of erased people are folded under
_SUMS = [c for c in USAGE_COLUMNS if c not in ("day", "tenant_id", "key_id", "model")]
_KEYS = "(SELECT id FROM api_keys WHERE user_id=?)"  # the person's keys, before they go
_FOLD = (f"INSERT INTO usage(day, tenant_id, key_id, model, {', '.join(_SUMS)}) "  # noqa: S608 (constants)
         f"SELECT day, tenant_id, '{ERASED}', model, "
         f"{', '.join(f'SUM({c})' for c in _SUMS)} FROM usage WHERE key_id IN {_KEYS} "
         "GROUP BY day, tenant_id, model "
         "ON CONFLICT(day, tenant_id, key_id, model) DO UPDATE SET "
         + ", ".join(f"{c}={c}+excluded.{c}" for c in _SUMS))
_DROP_USAGE = f"DELETE FROM usage WHERE key_id IN {_KEYS}"  # noqa: S608 (constants)
_DROP_LIMITS = f"DELETE FROM quota_limits WHERE scope='key' AND id IN {_KEYS}"  # noqa: S608
# A script version names the key that saved it: that key id is theirs (a pseudonym).
_UNNAME_SCRIPTS = (f"UPDATE script_versions SET saved_by='{ERASED}' "  # noqa: S608 (constants)
                   f"WHERE saved_by IN {_KEYS}")


@dataclass(frozen=True)
class Erased:
    job_ids: list[str]  # their artifacts are the caller's to delete (files, not rows)
    responses: int
    keys: int
    consents: int
    usage_rows: int
    script_versions: int  # versions they saved, now saved by `ERASED`


class GdprStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- consent
    def add_consent(self, consent: Consent) -> None:
        self._db.execute("INSERT INTO consents(user_id, purpose, granted, at, by_key) "
                         "VALUES (?,?,?,?,?)", (consent.subject, consent.purpose,
                                                int(consent.granted), consent.at,
                                                consent.by_key))

    def consents(self, user_id: str) -> list[Consent]:
        rows = self._db.query("SELECT user_id, purpose, granted, at, by_key FROM consents "
                              "WHERE user_id=? ORDER BY seq", (user_id,))
        return [Consent(subject=r[0], purpose=r[1], granted=bool(r[2]), at=r[3], by_key=r[4])
                for r in rows]

    def granted(self, purpose: str) -> set[str]:
        """The users whose latest decision for `purpose` is a grant."""
        rows = self._db.query(
            "SELECT user_id, granted FROM consents c WHERE purpose=? AND seq = "
            "(SELECT MAX(seq) FROM consents WHERE user_id=c.user_id AND purpose=c.purpose)",
            (purpose,))
        return {r[0] for r in rows if r[1]}

    # -- content
    def job_ids(self, user_id: str, unfinished: bool = False) -> list[str]:
        """The person's jobs (only those still queued or running, when `unfinished`)."""
        rows = self._db.query("SELECT id FROM jobs WHERE user_id=? AND (? = 0 OR state IN "
                              "('queued', 'running')) ORDER BY created_at",
                              (user_id, int(unfinished)))
        return [r[0] for r in rows]

    def script_versions(self, user_id: str) -> list[dict[str, Any]]:
        """The scheduler script versions the person's keys saved (not their source: that is
        the cluster's, not personal)."""
        rows = self._db.query(f"SELECT name, version, saved_at, saved_by FROM "  # noqa: S608
                              f"script_versions WHERE saved_by IN {_KEYS} "
                              "ORDER BY saved_at", (user_id,))
        return [{"name": r[0], "version": r[1], "saved_at": r[2], "key_id": r[3]}
                for r in rows]

    def responses(self, user_id: str) -> list[dict[str, Any]]:
        rows = self._db.query("SELECT id, created_at, response, conversation FROM responses "
                              "WHERE user_id=? ORDER BY created_at", (user_id,))
        return [{"id": r[0], "created_at": r[1], "response": json.loads(r[2]),
                 "conversation": json.loads(r[3])} for r in rows]

    # -- erasure
    def erase(self, user_id: str) -> Erased:
        with self._db.transaction() as tx:
            jobs = [r[0] for r in tx.execute("SELECT id FROM jobs WHERE user_id=?",
                                             (user_id,)).fetchall()]
            tx.execute("DELETE FROM jobs WHERE user_id=?", (user_id,))
            responses = tx.execute("DELETE FROM responses WHERE user_id=?",
                                   (user_id,)).rowcount
            consents = tx.execute("DELETE FROM consents WHERE user_id=?", (user_id,)).rowcount
            tx.execute(_FOLD, (user_id,))
            usage = tx.execute(_DROP_USAGE, (user_id,)).rowcount
            tx.execute(_DROP_LIMITS, (user_id,))
            scripts = tx.execute(_UNNAME_SCRIPTS, (user_id,)).rowcount
            keys = tx.execute("DELETE FROM api_keys WHERE user_id=?", (user_id,)).rowcount
            tx.execute("DELETE FROM users WHERE id=?", (user_id,))
        return Erased(jobs, responses, keys, consents, usage, scripts)

    def compact(self) -> None:
        """Empty the WAL into the file: the deleted rows' bytes are gone from disk. The
        database zeroes what it deletes (`secure_delete`, storage.db), so the pages hold
        none; the WAL still held their last versions until this checkpoint."""
        self._db.query("PRAGMA wal_checkpoint(TRUNCATE)")
