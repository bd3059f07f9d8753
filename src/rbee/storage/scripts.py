"""Scheduling scripts: saved sources, and which one is active (at most one)."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ScriptRow:
    name: str
    source: str
    active: bool
    updated_at: float


class ScriptStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def all(self) -> list[ScriptRow]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, source, active, updated_at FROM scripts ORDER BY name").fetchall()
        return [ScriptRow(r[0], r[1], bool(r[2]), r[3]) for r in rows]

    def get(self, name: str) -> ScriptRow | None:
        return next((r for r in self.all() if r.name == name), None)

    def active(self) -> ScriptRow | None:
        return next((r for r in self.all() if r.active), None)

    def save(self, name: str, source: str, now: float) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO scripts(name, source, active, updated_at) VALUES (?,?,0,?) "
                "ON CONFLICT(name) DO UPDATE SET source=excluded.source, "
                "updated_at=excluded.updated_at", (name, source, now))

    def activate(self, name: str | None) -> None:
        """Make `name` the only active script (None: no script)."""
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.execute("UPDATE scripts SET active=0")
            if name is not None:
                self._conn.execute("UPDATE scripts SET active=1 WHERE name=?", (name,))
            self._conn.execute("COMMIT")

    def delete(self, name: str) -> bool:
        with self._lock:
            cur = self._conn.execute("DELETE FROM scripts WHERE name=?", (name,))
        return cur.rowcount > 0
