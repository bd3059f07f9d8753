"""The queen's database: one SQLite connection behind one lock, migrations, a start-up check.

Every store (jobs, hives, scripts) goes through one `Database`. The connection is used from
the event loop and from worker threads; a single lock around every statement and around each
whole transaction means no statement of one store can land inside another's open transaction
(with one lock per store, a hive write could join — and be rolled back with — a job's).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rbee.core.errors import RbeeError

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
    """
    CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        response TEXT NOT NULL,
        conversation TEXT NOT NULL
    );
    CREATE INDEX responses_created ON responses(created_at);
    """,
    # Identity: tenants -> users -> API keys. A key's secret is never stored: only the
    # SHA-256 of the whole key. Jobs and stored responses belong to the tenant that made them.
    """
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        labels TEXT NOT NULL DEFAULT '{}',
        regions TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        email TEXT,
        created_at REAL NOT NULL,
        UNIQUE (tenant_id, name)
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        role TEXT NOT NULL,
        models TEXT,
        max_priority TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL
    );
    ALTER TABLE jobs ADD COLUMN tenant_id TEXT;
    ALTER TABLE responses ADD COLUMN tenant_id TEXT;
    """,
    # The audit log (storage/audit.py says why it is shaped so): a hash chain no UPDATE or
    # DELETE may touch except archival, its archive marks, and erasable personal data.
    """
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        tenant TEXT,
        actor_ref TEXT,
        actor TEXT NOT NULL,
        subject TEXT,
        details TEXT NOT NULL,
        prev TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_log_at ON audit_log(at);
    CREATE INDEX audit_log_actor_ref ON audit_log(actor_ref);
    CREATE INDEX audit_log_subject ON audit_log(subject);
    CREATE TABLE audit_archives (
        through_seq INTEGER PRIMARY KEY,
        first_seq INTEGER NOT NULL,
        last_hash TEXT NOT NULL,
        file TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        archived_at REAL NOT NULL
    );
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit log entries cannot be changed'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    WHEN OLD.seq > (SELECT COALESCE(MAX(through_seq), 0) FROM audit_archives)
    BEGIN SELECT RAISE(ABORT, 'audit log entries leave only through archival'); END;
    CREATE TRIGGER audit_archives_no_update BEFORE UPDATE ON audit_archives
    BEGIN SELECT RAISE(ABORT, 'audit archive marks cannot be changed'); END;
    CREATE TRIGGER audit_archives_no_delete BEFORE DELETE ON audit_archives
    BEGIN SELECT RAISE(ABORT, 'audit archive marks cannot be deleted'); END;
    CREATE TABLE audit_secrets (person TEXT PRIMARY KEY, secret BLOB NOT NULL);
    CREATE TABLE audit_personal (
        seq INTEGER NOT NULL,
        person TEXT NOT NULL,
        role TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX audit_personal_person ON audit_personal(person);
    CREATE INDEX audit_personal_seq ON audit_personal(seq);
    """,
    # Quotas: limits per tenant or key, prices per model, and usage per tenant, key, model
    # and UTC day from the engines' own counts (the day and month windows restart from it).
    """
    CREATE TABLE quota_limits (
        scope TEXT NOT NULL,
        id TEXT NOT NULL,
        limits TEXT NOT NULL,
        PRIMARY KEY (scope, id)
    );
    CREATE TABLE model_prices (
        model TEXT PRIMARY KEY,
        prices TEXT NOT NULL
    );
    CREATE TABLE usage (
        day TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        model TEXT NOT NULL,
        requests INTEGER NOT NULL DEFAULT 0,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        audio_seconds REAL NOT NULL DEFAULT 0,
        images INTEGER NOT NULL DEFAULT 0,
        video_seconds REAL NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (day, tenant_id, key_id, model)
    );
    """,
    # GDPR: whose (which user's) each job and stored response is, so a person's content can
    # be found and erased; tenants that demand consent; consent decisions (history kept:
    # one row per decision, the latest per purpose counts).
    """
    ALTER TABLE jobs ADD COLUMN user_id TEXT;
    ALTER TABLE responses ADD COLUMN user_id TEXT;
    CREATE INDEX jobs_user ON jobs(user_id);
    CREATE INDEX responses_user ON responses(user_id);
    ALTER TABLE tenants ADD COLUMN requires_consent INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE consents (
        seq INTEGER PRIMARY KEY,
        user_id TEXT NOT NULL,
        purpose TEXT NOT NULL,
        granted INTEGER NOT NULL,
        at REAL NOT NULL,
        by_key TEXT
    );
    CREATE INDEX consents_user ON consents(user_id, purpose, seq);
    """,
    # Scheduling scripts keep their versions: every save is one (when, by which key), the
    # script's row names the one in force, and a rollback puts an earlier one back in force.
    # Scripts saved before this migration become their version 1, by nobody known.
    """
    CREATE TABLE script_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        source TEXT NOT NULL,
        saved_at REAL NOT NULL,
        saved_by TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    ALTER TABLE scripts ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    INSERT INTO script_versions(name, version, source, saved_at, saved_by)
        SELECT name, 1, source, updated_at, 'unknown' FROM scripts;
    """,
    # The audit log's seals: HMAC of each entry's hash under a key kept outside this file
    # (core.audit_chain SealKey), so rewriting the chain here cannot go unnoticed. Adding a
    # column changes no entry (the triggers forbid that, and the hashes do not cover it).
    """
    ALTER TABLE audit_log ADD COLUMN seal TEXT;
    """,
)
# SQLite's own names for "this is not a (healthy) database file": damage, not an access problem.
_DAMAGE_ERRORS = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT"})


class DatabaseUnusable(RbeeError):
    """The database file cannot be used as it is; `damaged` says whether moving it aside helps."""

    def __init__(self, path: Path, reason: str, *, damaged: bool) -> None:
        what = "is damaged" if damaged else "cannot be opened"
        super().__init__(f"{path} {what} ({reason})")
        self.path = path
        self.damaged = damaged


class NestedUse(RuntimeError):
    """The thread holding a transaction used the database again: that would deadlock."""


class Database:
    """One connection and the one lock that guards it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._owner: int | None = None  # thread inside `transaction()`, to refuse nested use

    @contextlib.contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        if self._owner == threading.get_ident():
            raise NestedUse("the database is already in a transaction on this thread")
        with self._lock:
            yield self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Statements that commit together; nothing else touches the database meanwhile.

        Synchronous on purpose: never await inside it (the lock would stall the loop).
        """
        with self._locked() as conn:
            self._owner = threading.get_ident()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                self._owner = None

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """One statement, committed on its own; how many rows it changed."""
        with self._locked() as conn:
            return conn.execute(sql, args).rowcount

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._locked() as conn:
            return conn.execute(sql, args).fetchall()

    def query_one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._locked() as conn:
            row: tuple[Any, ...] | None = conn.execute(sql, args).fetchone()
            return row

    def close(self) -> None:
        with self._locked() as conn:
            conn.close()


def connect(path: Path | str, *, verify: bool = False) -> Database:
    """Open the database at `path` (created, complete, if there is none) and migrate it.

    An existing file must be a usable rbee database: raises DatabaseUnusable otherwise, never
    starts an empty history in its place. `verify` also reads every page (PRAGMA quick_check),
    which is what the queen does once at start-up.
    """
    if str(path) == ":memory:":
        conn = _configure(sqlite3.connect(":memory:", check_same_thread=False,
                                          isolation_level=None))
        migrate(conn)
        return Database(conn)
    path = Path(path)
    try:
        if not path.exists():
            _create(path)
        return Database(_open_existing(path, verify))
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        raise DatabaseUnusable(path, str(exc), damaged=name in _DAMAGE_ERRORS) from None
    except OSError as exc:  # the state directory itself: permissions, a full disk…
        raise DatabaseUnusable(path, exc.strerror or str(exc), damaged=False) from None


def _open_existing(path: Path, verify: bool) -> sqlite3.Connection:
    if path.stat().st_size == 0:
        # rbee never leaves an empty file (see _create): someone truncated it, history is gone.
        raise DatabaseUnusable(path, "the file is empty: its job history is gone", damaged=True)
    # mode=rw: never create here; a file that vanished since the check is an error, not new.
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True,
                           check_same_thread=False, isolation_level=None)
    try:
        if verify:
            _verify(path, conn)
        _configure(conn)
        _check_version(path, conn)
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _verify(path: Path, conn: sqlite3.Connection) -> None:
    problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if problem != "ok":
        # SQLite's report spans lines and starts with a banner: keep one line of substance.
        first = " ".join(str(problem).replace("*** in database main ***", "").split())
        raise DatabaseUnusable(path, first[:200], damaged=True)


def _check_version(path: Path, conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise DatabaseUnusable(path, f"written by a newer rbee: schema {version}, this rbee "
                               f"knows {len(MIGRATIONS)}", damaged=False)


def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    # Deleted rows are overwritten with zeros, not left in free pages until reused: a GDPR
    # erasure then needs no VACUUM (a rewrite of the whole file under the one lock every
    # request shares), only a checkpoint; retention purges pay a little more I/O.
    conn.execute("PRAGMA secure_delete=ON")
    return conn


def _create(path: Path) -> None:
    """Build a new, migrated database beside `path`, then link it into place.

    So a file at `path` is always one rbee finished creating: an empty or partial file there
    is damage to report, never a half-made database of ours. link() refuses to replace a
    database another process created meanwhile.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.new-{os.getpid()}")
    scratch.unlink(missing_ok=True)
    conn = sqlite3.connect(str(scratch), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # stored in the file's header
        migrate(conn)
    finally:
        conn.close()  # checkpoints: everything is in the main file, the WAL is removed
    try:
        os.link(scratch, path)
    except FileExistsError:
        pass  # another process created it first: use theirs
    except OSError:  # a file system without hard links: rename, the same outcome
        if not path.exists():
            os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")
