"""SQLite connection factory and migrations (PRAGMA user_version)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        operation TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        finished_at REAL,
        request TEXT NOT NULL,
        result TEXT,
        error TEXT
    );
    CREATE INDEX jobs_created ON jobs(created_at);
    CREATE TABLE job_events (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        event TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    );
    """,
    """
    CREATE TABLE hives (
        id TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        worker_token TEXT NOT NULL,
        installed TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE scripts (
        name TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    );
    """,
)


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) and migrate. Shared across threads under the caller's lock."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")
