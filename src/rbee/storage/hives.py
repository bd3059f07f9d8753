"""The hives this queen installed: their secrets and what was installed (survives restarts).

A queen that restarts reloads these secrets, so the hives it installed (still running, still
reporting) are accepted again and re-discovered with their workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rbee.storage.db import Database


@dataclass(frozen=True)
class HiveRow:
    id: str
    token: str
    worker_token: str
    installed: dict[str, Any]


class HiveStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> list[HiveRow]:
        rows = self._db.query(
            "SELECT id, token, worker_token, installed FROM hives ORDER BY id")
        return [HiveRow(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def get(self, hive_id: str) -> HiveRow | None:
        return next((r for r in self.all() if r.id == hive_id), None)

    def save(self, row: HiveRow, now: float) -> None:
        self._db.execute(
            "INSERT INTO hives(id, token, worker_token, installed, updated_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET token=excluded.token, "
            "worker_token=excluded.worker_token, installed=excluded.installed, "
            "updated_at=excluded.updated_at",
            (row.id, row.token, row.worker_token, json.dumps(row.installed), now))

    def delete(self, hive_id: str) -> None:
        self._db.execute("DELETE FROM hives WHERE id=?", (hive_id,))
