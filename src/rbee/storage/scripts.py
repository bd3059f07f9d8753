"""Scheduling scripts: saved sources, and which one is active (at most one)."""

from __future__ import annotations

from dataclasses import dataclass

from rbee.storage.db import Database


@dataclass(frozen=True)
class ScriptRow:
    name: str
    source: str
    active: bool
    updated_at: float


class ScriptStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> list[ScriptRow]:
        rows = self._db.query(
            "SELECT name, source, active, updated_at FROM scripts ORDER BY name")
        return [ScriptRow(r[0], r[1], bool(r[2]), r[3]) for r in rows]

    def get(self, name: str) -> ScriptRow | None:
        return next((r for r in self.all() if r.name == name), None)

    def active(self) -> ScriptRow | None:
        return next((r for r in self.all() if r.active), None)

    def save(self, name: str, source: str, now: float) -> None:
        self._db.execute(
            "INSERT INTO scripts(name, source, active, updated_at) VALUES (?,?,0,?) "
            "ON CONFLICT(name) DO UPDATE SET source=excluded.source, "
            "updated_at=excluded.updated_at", (name, source, now))

    def activate(self, name: str | None) -> None:
        """Make `name` the only active script (None: no script)."""
        with self._db.transaction() as tx:
            tx.execute("UPDATE scripts SET active=0")
            if name is not None:
                tx.execute("UPDATE scripts SET active=1 WHERE name=?", (name,))

    def delete(self, name: str) -> bool:
        return self._db.execute("DELETE FROM scripts WHERE name=?", (name,)) > 0
