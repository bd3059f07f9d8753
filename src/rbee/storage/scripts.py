"""Scheduling scripts: saved sources with their versions, and which one is active (at most one).

Every save is a new version (when, and by which key); the script's row holds the version in
force. A rollback puts an earlier version back in force without deleting the later ones, so
it can itself be undone. The oldest versions beyond `KEEP_VERSIONS` are dropped (never the
one in force): a script is at most 256 KiB, and a history of thousands would be megabytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from rbee.storage.db import Database

KEEP_VERSIONS = 50


@dataclass(frozen=True)
class ScriptRow:
    name: str
    source: str
    active: bool
    updated_at: float
    version: int = 1


@dataclass(frozen=True)
class ScriptVersion:
    name: str
    version: int
    source: str
    saved_at: float
    saved_by: str


class ScriptStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> list[ScriptRow]:
        rows = self._db.query(
            "SELECT name, source, active, updated_at, version FROM scripts ORDER BY name")
        return [ScriptRow(r[0], r[1], bool(r[2]), r[3], r[4]) for r in rows]

    def get(self, name: str) -> ScriptRow | None:
        r = self._db.query_one(
            "SELECT name, source, active, updated_at, version FROM scripts WHERE name=?",
            (name,))
        return None if r is None else ScriptRow(r[0], r[1], bool(r[2]), r[3], r[4])

    def active(self) -> ScriptRow | None:
        return next((r for r in self.all() if r.active), None)

    def save(self, name: str, source: str, now: float, by: str = "unknown") -> int:
        """Store `source` as the script's next version, in force at once; that version."""
        with self._db.transaction() as tx:
            last = tx.execute("SELECT COALESCE(MAX(version), 0) FROM script_versions "
                              "WHERE name=?", (name,)).fetchone()[0]
            version = int(last) + 1
            tx.execute("INSERT INTO script_versions(name, version, source, saved_at, saved_by) "
                       "VALUES (?,?,?,?,?)", (name, version, source, now, by))
            tx.execute(
                "INSERT INTO scripts(name, source, active, updated_at, version) "
                "VALUES (?,?,0,?,?) ON CONFLICT(name) DO UPDATE SET source=excluded.source, "
                "updated_at=excluded.updated_at, version=excluded.version",
                (name, source, now, version))
            tx.execute("DELETE FROM script_versions WHERE name=? AND version<=?",
                       (name, version - KEEP_VERSIONS))
        return version

    def history(self, name: str) -> list[ScriptVersion]:
        """The kept versions of `name`, newest first."""
        rows = self._db.query(
            "SELECT name, version, source, saved_at, saved_by FROM script_versions "
            "WHERE name=? ORDER BY version DESC", (name,))
        return [ScriptVersion(*r) for r in rows]

    def version(self, name: str, version: int) -> ScriptVersion | None:
        r = self._db.query_one(
            "SELECT name, version, source, saved_at, saved_by FROM script_versions "
            "WHERE name=? AND version=?", (name, version))
        return None if r is None else ScriptVersion(*r)

    def restore(self, name: str, version: int, now: float) -> bool:
        """Put a kept version back in force and make the script the active one; False when
        there is no such version."""
        with self._db.transaction() as tx:
            row = tx.execute("SELECT source FROM script_versions WHERE name=? AND version=?",
                             (name, version)).fetchone()
            if row is None:
                return False
            tx.execute("UPDATE scripts SET source=?, version=?, updated_at=? WHERE name=?",
                       (row[0], version, now, name))
            tx.execute("UPDATE scripts SET active=(name=?)", (name,))
        return True

    def activate(self, name: str | None) -> None:
        """Make `name` the only active script (None: no script)."""
        with self._db.transaction() as tx:
            tx.execute("UPDATE scripts SET active=0")
            if name is not None:
                tx.execute("UPDATE scripts SET active=1 WHERE name=?", (name,))

    def delete(self, name: str) -> bool:
        """The script and its history."""
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM script_versions WHERE name=?", (name,))
            return tx.execute("DELETE FROM scripts WHERE name=?", (name,)).rowcount > 0
