"""Jobs and their events, over the queen's one Database."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rbee.api.jobs import JobEvent, JobSummary
from rbee.storage.db import Database

_INSERT_EVENT = "INSERT OR IGNORE INTO job_events(job_id, seq, event, data) VALUES (?,?,?,?)"
_SUMMARY_COLUMNS = ("SELECT id, operation, state, created_at, finished_at, request, result, "
                    "error FROM jobs")


class JobStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, job_id: str, operation: str, request: dict[str, Any], now: float,
               tenant_id: str | None = None, user_id: str | None = None) -> None:
        self._db.execute(
            "INSERT INTO jobs(id, operation, state, created_at, request, tenant_id, user_id) "
            "VALUES (?,?,?,?,?,?,?)",
            (job_id, operation, "queued", now, json.dumps(request), tenant_id, user_id))

    def owner(self, job_id: str) -> tuple[bool, str | None]:
        """(whether the job exists, the tenant it belongs to: None for the queen's own)."""
        row = self._db.query_one("SELECT tenant_id FROM jobs WHERE id=?", (job_id,))
        return (row is not None, row[0] if row else None)

    def set_state(self, job_id: str, state: str) -> None:
        """A live job's new state; never over a finished one's (a job cancelled while this
        write waited for the database must stay cancelled)."""
        self._db.execute("UPDATE jobs SET state=? WHERE id=? AND finished_at IS NULL",
                         (state, job_id))

    def append(self, job_id: str, events: Iterable[JobEvent]) -> None:
        rows = _rows(job_id, events)
        if rows:
            with self._db.transaction() as tx:
                tx.executemany(_INSERT_EVENT, rows)

    def finish(self, job_id: str, state: str, now: float, result: dict[str, Any] | None,
               error: str | None, events: Iterable[JobEvent]) -> None:
        """Write the last events and the terminal state in one transaction."""
        rows = _rows(job_id, events)
        stored_result = json.dumps(result) if result is not None else None
        with self._db.transaction() as tx:
            tx.executemany(_INSERT_EVENT, rows)
            tx.execute("UPDATE jobs SET state=?, finished_at=?, result=?, error=? WHERE id=?",
                       (state, now, stored_result, error, job_id))

    def get(self, job_id: str) -> JobSummary | None:
        row = self._db.query_one(f"{_SUMMARY_COLUMNS} WHERE id=?", (job_id,))
        return _summary(row) if row else None

    def recent(self, limit: int = 50, state: str | None = None,
               tenant_id: str | None = None) -> list[JobSummary]:
        """The latest jobs, of one state and one tenant (None: any)."""
        where, args = [], []
        if state:
            where.append("state=?")
            args.append(state)
        if tenant_id is not None:
            where.append("tenant_id=?")
            args.append(tenant_id)
        query = f"{_SUMMARY_COLUMNS} WHERE {' AND '.join(where)}" if where else _SUMMARY_COLUMNS
        rows = self._db.query(f"{query} ORDER BY created_at DESC, rowid DESC LIMIT ?",
                              (*args, limit))
        return [_summary(r) for r in rows]

    def of_operation(self, operation: str, limit: int, after: str | None = None,
                     newest_first: bool = True, tenant_id: str | None = None
                     ) -> list[JobSummary]:
        """Jobs of one operation (the videos), of one tenant or all (None), a page at a time:
        those after the job `after` in the order asked for."""
        query = _PAGES[(newest_first, after is not None)]
        head = (operation, tenant_id, tenant_id)
        args = (*head, after, limit) if after is not None else (*head, limit)
        rows = self._db.query(query, args)
        return [_summary(r) for r in rows]

    def purge(self, before: float) -> list[str]:
        """Delete the jobs that finished before `before` (with their events); their ids."""
        with self._db.transaction() as tx:
            gone = [r[0] for r in tx.execute(
                "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?",
                (before,)).fetchall()]
            tx.execute("DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?",
                       (before,))
        return gone

    def delete(self, job_id: str) -> bool:
        """Remove a finished job and its events (ON DELETE CASCADE); False if there was none."""
        return self._db.execute("DELETE FROM jobs WHERE id=?", (job_id,)) > 0

    def events(self, job_id: str, after: int = -1) -> list[JobEvent]:
        rows = self._db.query(
            "SELECT seq, event, data FROM job_events WHERE job_id=? AND seq>? ORDER BY seq",
            (job_id, after))
        return [JobEvent(seq=s, event=e, data=json.loads(d)) for s, e, d in rows]

    def last_event(self, job_id: str) -> JobEvent | None:
        row = self._db.query_one(
            "SELECT seq, event, data FROM job_events WHERE job_id=? ORDER BY seq DESC LIMIT 1",
            (job_id,))
        return JobEvent(seq=row[0], event=row[1], data=json.loads(row[2])) if row else None

    def unfinished(self) -> list[str]:
        rows = self._db.query("SELECT id FROM jobs WHERE state IN ('queued', 'running')")
        return [r[0] for r in rows]


_AFTER = " AND (created_at, rowid) {} (SELECT created_at, rowid FROM jobs WHERE id=?)"
_ORDER = " ORDER BY created_at {0}, rowid {0} LIMIT ?"
# (newest first, after a cursor) -> the page's query: four fixed statements, no SQL built
# from input.
_PAGES = {(newest, cursor): _SUMMARY_COLUMNS
          + " WHERE operation=? AND (? IS NULL OR tenant_id=?)"
          + (_AFTER.format("<" if newest else ">") if cursor else "")
          + _ORDER.format("DESC" if newest else "ASC")
          for newest in (True, False) for cursor in (True, False)}


def _rows(job_id: str, events: Iterable[JobEvent]) -> list[tuple[str, int, str, str]]:
    return [(job_id, e.seq, e.event, json.dumps(e.data)) for e in events]


def _summary(row: tuple[Any, ...]) -> JobSummary:
    job_id, operation, state, created, finished, request, result, error = row
    return JobSummary(job_id=job_id, operation=operation, state=state, created_at=created,
                      finished_at=finished, request=json.loads(request),
                      result=json.loads(result) if result else None, error=error)
