"""Jobs and their events. Thread-safe: one lock around one connection."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

from rbee.api.jobs import JobEvent, JobSummary


class JobStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def create(self, job_id: str, operation: str, request: dict[str, Any], now: float) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO jobs(id, operation, state, created_at, request) VALUES (?,?,?,?,?)",
                (job_id, operation, "queued", now, json.dumps(request)))

    def set_state(self, job_id: str, state: str) -> None:
        with self._lock:
            self._conn.execute("UPDATE jobs SET state=? WHERE id=?", (state, job_id))

    def append(self, job_id: str, events: Iterable[JobEvent]) -> None:
        rows = [(job_id, e.seq, e.event, json.dumps(e.data)) for e in events]
        if not rows:
            return
        with self._lock:
            self._conn.executemany(
                "INSERT OR IGNORE INTO job_events(job_id, seq, event, data) VALUES (?,?,?,?)", rows)

    def finish(self, job_id: str, state: str, now: float, result: dict[str, Any] | None,
               error: str | None, events: Iterable[JobEvent]) -> None:
        """Write the last events and the terminal state in one transaction."""
        rows = [(job_id, e.seq, e.event, json.dumps(e.data)) for e in events]
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO job_events(job_id, seq, event, data) VALUES (?,?,?,?)",
                    rows)
                self._conn.execute(
                    "UPDATE jobs SET state=?, finished_at=?, result=?, error=? WHERE id=?",
                    (state, now, json.dumps(result) if result is not None else None, error,
                     job_id))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def get(self, job_id: str) -> JobSummary | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, operation, state, created_at, finished_at, request, result, error "
                "FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _summary(row) if row else None

    def recent(self, limit: int = 50, state: str | None = None) -> list[JobSummary]:
        query = ("SELECT id, operation, state, created_at, finished_at, request, result, error "
                 "FROM jobs")
        args: tuple[Any, ...] = ()
        if state:
            query += " WHERE state=?"
            args = (state,)
        query += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(query, (*args, limit)).fetchall()
        return [_summary(r) for r in rows]

    def events(self, job_id: str, after: int = -1) -> list[JobEvent]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, event, data FROM job_events WHERE job_id=? AND seq>? ORDER BY seq",
                (job_id, after)).fetchall()
        return [JobEvent(seq=s, event=e, data=json.loads(d)) for s, e, d in rows]

    def unfinished(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id FROM jobs WHERE state IN ('queued', 'running')").fetchall()
        return [r[0] for r in rows]

    def last_seq(self, job_id: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(MAX(seq), -1) FROM job_events WHERE job_id=?", (job_id,)
            ).fetchone()
        return int(row[0])


def _summary(row: tuple[Any, ...]) -> JobSummary:
    job_id, operation, state, created, finished, request, result, error = row
    return JobSummary(job_id=job_id, operation=operation, state=state, created_at=created,
                      finished_at=finished, request=json.loads(request),
                      result=json.loads(result) if result else None, error=error)
