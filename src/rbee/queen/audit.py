"""The audit log: who did what, when, with what outcome — recorded off the hot path.

`record` only appends to a list (a lock, a small object: a few microseconds); a writer task
chains and inserts what gathered, in one transaction per batch, on a thread. One batch at a
time, and the chain's head read inside that transaction, keep the chain consistent however
many callers record at once. A clean shutdown (`close`) writes everything still pending;
a crash loses at most the last `flush_interval` of entries, never the chain's consistency.

What is never recorded: prompts, outputs, keys, tokens. Actors are named by tenant id, user
id and key fingerprint; the user id, the key fingerprint of a user's key and the client IP
are personal, so they enter the chain only as pseudonyms (see storage/audit.py for erasure).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rbee.core.audit_chain import (
    GENESIS,
    Entry,
    Problem,
    SealKey,
    Verdict,
    Walk,
    encode,
    header,
    read_lines,
    verify_export,
)
from rbee.core.clock import Clock
from rbee.core.private import secret_file
from rbee.queen.actor import ANONYMOUS, Actor
from rbee.queen.erased import Erased
from rbee.queen.jobs import FinishedJob
from rbee.storage.audit import ArchiveMark, AuditStore, Filters, Pending

logger = logging.getLogger(__name__)
Outcome = Literal["ok", "error", "denied", "cancelled"]
YEAR = 365.25 * 86400
# Entries held while the database cannot be written: past this many, further ones are only
# counted, and an `audit.dropped` entry with the count is written once writes work again.
MAX_PENDING = 100_000
# A subject comes from a request (a hive or script name): bounded, a body can be 8 MiB.
MAX_SUBJECT = 200


# Job operations that change the cluster or its policy: audited as admin changes.
ADMIN_OPERATIONS = {
    "hive_install": "hive.install", "hive_uninstall": "hive.uninstall",
    "hive_start": "hive.start", "hive_stop": "hive.stop",
    "hive_refresh_capabilities": "hive.refresh", "script_save": "script.save",
    "script_delete": "script.delete", "script_activate": "script.activate",
    "script_rollback": "script.rollback",
    "worker_spawn": "worker.spawn", "worker_stop": "worker.stop",
}
_OUTCOMES: dict[str, Outcome] = {"done": "ok", "error": "error", "cancelled": "cancelled"}

QUEEN = Actor(role="system")  # the queen itself (archival)


@dataclass(frozen=True)
class Person:
    """A data subject named as an entry's subject: stored as a pseudonym."""

    id: str


def seal_key(path: Path, next_seq: Callable[[], int]) -> SealKey:
    """The queen's seal key, made on first start: it seals the entries from the next one on
    (those written before carry no seal and are checked by their hashes alone)."""
    def make() -> bytes:
        return SealKey(secrets.token_bytes(32), next_seq()).to_bytes()

    return SealKey.from_bytes(secret_file(path, make))


class AuditLog:
    def __init__(self, store: AuditStore, clock: Clock, *, archive_dir: Path,
                 retention: float = 7 * YEAR, flush_interval: float = 0.05,
                 erased: Erased | None = None, max_pending: int = MAX_PENDING) -> None:
        self._store = store
        self._erased = erased or Erased()
        self._clock = clock
        self._archive_dir = archive_dir
        self._retention = retention
        self._interval = flush_interval
        self._pending: list[Pending] = []
        self._max_pending = max_pending
        self._dropped = 0  # entries not kept while writes failed (the gap entry says so)
        self._lock = threading.Lock()  # guards _pending, _dropped and _woken
        self._flushing = threading.Lock()  # one batch at a time, in order
        self._moving = threading.Lock()  # archival and a walk: never at once
        self._woken = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._head: tuple[int, str] | None = None  # the last entry this process wrote
        self._closed = False

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- recording (any thread; cheap) ------------------------------------------------------
    def record(self, action: str, *, actor: Actor = ANONYMOUS, subject: str | Person | None
               = None, outcome: Outcome, details: Mapping[str, Any] | None = None) -> None:
        actor = self._erased.actor(actor)  # a request that outlived its person's erasure
        personal, plain = actor.split()
        item = Pending(at=self._clock.time(), action=action, outcome=outcome,
                       tenant=actor.tenant_id, person=actor.person(), personal=personal,
                       plain=plain,
                       subject=subject[:MAX_SUBJECT] if isinstance(subject, str) else None,
                       subject_person=subject.id if isinstance(subject, Person) else None,
                       details=dict(details or {}))
        with self._lock:
            if len(self._pending) < self._max_pending:
                self._pending.append(item)
            else:  # writes have failed for long (a full disk): memory must not follow
                if not self._dropped:
                    logger.error("the audit log cannot be written and %d entries wait: "
                                 "further entries are counted, not kept, until it can",
                                 len(self._pending))
                self._dropped += 1
            wake, self._woken = not self._woken, True
        if self._closed:  # after shutdown (a stream closing late): write it at once
            self._write_safely()
        elif wake and self._loop is not None:
            if threading.get_ident() == self._loop_thread:
                self._wake.set()
            else:
                self._loop.call_soon_threadsafe(self._wake.set)

    def auth_failure(self, reason: str, *, actor: Actor = ANONYMOUS, path: str | None = None
                     ) -> None:
        """A credential was refused (for the key-checking middleware to call)."""
        self.record("auth.failure", actor=actor, outcome="denied",
                    details={"reason": reason[:200], "path": path[:200] if path else None})

    def admin_change(self, what: str, *, actor: Actor = ANONYMOUS, subject: str | Person | None,
                     outcome: Outcome, details: Mapping[str, Any] | None = None) -> None:
        """A change to tenants, keys, quotas, scripts or hives: `what` like "script.save"."""
        self.record(f"admin.{what}", actor=actor, subject=subject, outcome=outcome,
                    details=details)

    def inference(self, facts: Inference, *, actor: Actor = ANONYMOUS) -> None:
        """One OpenAI request at completion: facts only, never prompt or output text."""
        self.record("inference", actor=actor, subject=facts.model, outcome=facts.outcome,
                    details=facts.details())

    def job(self, job: FinishedJob) -> None:
        """A job at its end; admin operations (hives, scripts, workers) as admin changes."""
        actor = job.actor
        details = {"job_id": job.id, "operation": job.operation, "code": job.code,
                   "duration_ms": round(job.seconds * 1000, 3)}
        outcome = _OUTCOMES.get(job.state, "error")
        admin = ADMIN_OPERATIONS.get(job.operation)
        if admin is not None:
            self.admin_change(admin, actor=actor, subject=job.subject, outcome=outcome,
                              details=details)
        else:
            self.record(f"job.{job.operation}", actor=actor, subject=job.subject,
                        outcome=outcome, details=details)

    def gdpr(self, what: str, *, actor: Actor = ANONYMOUS, outcome: Outcome = "ok",
             details: Mapping[str, Any] | None = None) -> None:
        """A GDPR action (export, erasure, consent). Never names the person in clear."""
        self.record(f"gdpr.{what}", actor=actor, outcome=outcome, details=details)

    # -- writing -------------------------------------------------------------------------
    async def run(self) -> None:
        """The writer: a batch every `flush_interval` while entries come in."""
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        if self._pending:
            self._wake.set()
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._interval)  # let a batch gather
            self._wake.clear()
            with self._lock:
                self._woken = False
            try:
                await asyncio.to_thread(self.flush_now)
            except Exception:
                logger.exception("audit entries not written yet; retrying")
                await asyncio.sleep(1.0)
                self._wake.set()

    def flush_now(self) -> None:
        """Write everything recorded so far (on this thread)."""
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, []
                dropped, self._dropped = self._dropped, 0
            if dropped:  # the gap is in the chain itself, never silent
                batch.append(Pending(at=self._clock.time(), action="audit.dropped",
                                     outcome="error", details={"entries": dropped}))
            if not batch:
                return
            try:
                self._head = self._store.append(batch)
            except BaseException:
                with self._lock:  # keep them, first, for the next try (the gap as a count)
                    self._pending[:0] = batch[:-1] if dropped else batch
                    self._dropped += dropped
                raise

    async def flush(self) -> None:
        await asyncio.to_thread(self.flush_now)

    def _write_safely(self) -> None:
        try:
            self.flush_now()
        except Exception:
            logger.exception("audit entries recorded after shutdown could not be written")

    async def close(self, writer: asyncio.Task[None] | None = None) -> None:
        """Stop the writer and write what is pending: nothing is lost on a clean stop."""
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        self._closed = True
        await asyncio.to_thread(self._write_safely)

    # -- reading -------------------------------------------------------------------------
    async def verify(self, archives: bool = False) -> Verdict:
        return await asyncio.to_thread(self._verify, archives)

    def _verify(self, archives: bool) -> Verdict:
        with self._moving:  # archival would delete rows under the walk: a false gap
            return self._walk(archives)

    def _walk(self, archives: bool) -> Verdict:
        self.flush_now()
        # Up to the head this process wrote (committed before it is set): batches written
        # while the walk runs are not half-seen, nor mistaken for a truncated tail.
        head = self._head
        first, prev = self._store.start()
        walk = Walk(first, prev, key=self._store.key)
        if archives and not self._walk_archives(walk):
            return walk.verdict
        for entry in self._store.walk(walk.verdict.head_seq, head[0] if head else None):
            if not walk.feed(entry):
                return walk.verdict
        return walk.expect_head(*head) if head is not None else walk.verdict

    def _walk_archives(self, walk: Walk) -> bool:
        marks = self._store.marks()
        if marks:
            walk.verdict.head_seq, walk.verdict.head_hash = marks[0].first_seq - 1, GENESIS
        for mark in marks:
            if not _walk_archive(self._archive_dir / mark.file, mark, walk):
                return False
            walk.verdict.archives.append(mark.file)
        return True

    async def page(self, filters: Filters) -> list[tuple[Entry, list[dict[str, Any]]]]:
        def read() -> list[tuple[Entry, list[dict[str, Any]]]]:
            self.flush_now()
            entries = self._store.page(filters)
            clear = self._store.personal([e.seq for e in entries])
            return [(e, clear.get(e.seq, [])) for e in entries]

        return await asyncio.to_thread(read)

    async def export(self) -> AsyncIterator[str]:
        """JSON lines: a header with the chain head, then every live entry up to it."""
        await self.flush()
        first, prev = await asyncio.to_thread(self._store.start)
        seq, digest = await asyncio.to_thread(self._store.head)
        yield encode(header(first, prev, seq, digest, exported_at=self._clock.time()))
        after = first - 1
        while after < seq:
            chunk = await asyncio.to_thread(self._store.chunk, after, seq)
            if not chunk:
                return
            yield "".join(encode(e.to_json()) for e in chunk)
            after = chunk[-1].seq

    # -- GDPR ----------------------------------------------------------------------------
    async def entries_about(self, person: str) -> list[dict[str, Any]]:
        """Every live entry naming `person`, with their clear fields (for a GDPR export)."""
        def read() -> list[dict[str, Any]]:
            self.flush_now()
            return [{**e.to_json(), "personal": clear} for e, clear in self._store.about(person)]

        return await asyncio.to_thread(read)

    async def erase_subject(self, person: str, *, actor: Actor = ANONYMOUS) -> dict[str, Any]:
        """Unlink `person` from every entry (crypto-shredding); the chain still verifies.

        Entries recorded about them before this call are written first, so none escapes.
        The erasure itself is recorded, without naming the person."""
        def erase() -> dict[str, Any]:
            self.flush_now()  # after any batch in flight (flush_now waits for it)
            done = self._store.erase(person)
            return {"entries_unlinked": done.entries_unlinked,
                    "personal_rows_deleted": done.personal_rows_deleted,
                    "had_data": done.had_data}

        receipt = await asyncio.to_thread(erase)
        self.gdpr("erase", actor=actor, details=receipt)
        await self.flush()
        head = self._head or (0, "")
        return {"subject": person, "erased_at": self._clock.time(), **receipt,
                "audit_seq": head[0], "audit_hash": head[1]}

    # -- retention -----------------------------------------------------------------------
    async def archive_due(self) -> list[ArchiveMark]:
        """Move entries older than the retention period to archive files (chain intact)."""
        marks: list[ArchiveMark] = []
        cutoff = self._clock.time() - self._retention
        while mark := await asyncio.to_thread(self._archive_one, cutoff):
            marks.append(mark)
            self.record("audit.archive", actor=QUEEN, subject=mark.file, outcome="ok",
                        details={"first_seq": mark.first_seq, "through_seq": mark.through_seq,
                                 "sha256": mark.sha256})
        return marks

    def _archive_one(self, cutoff: float) -> ArchiveMark | None:
        with self._moving:
            return self._store.archive(cutoff, self._archive_dir, self._clock.time())

    async def archive_loop(self, every: float = 86400.0) -> None:
        while True:
            try:
                await self.archive_due()
            except Exception:
                logger.exception("audit archival failed; retrying in %.0f s", every)
            await asyncio.sleep(every)


@dataclass(frozen=True)
class Inference:
    """The facts of one inference request (what the audit keeps; no text)."""

    path: str
    model: str
    outcome: Outcome
    started: float  # monotonic seconds
    ended: float
    stream: bool
    status: int | None = None
    code: str | None = None
    worker_id: str | None = None
    hive_id: str | None = None
    region: str | None = None
    usage: Mapping[str, int] | None = None

    def details(self) -> dict[str, Any]:
        return {"path": self.path, "stream": self.stream, "status": self.status,
                "code": self.code, "worker": self.worker_id, "hive": self.hive_id,
                "region": self.region, "usage": dict(self.usage) if self.usage else None,
                "duration_ms": round((self.ended - self.started) * 1000, 3)}


def _walk_archive(path: Path, mark: ArchiveMark, walk: Walk) -> bool:
    v = walk.verdict
    if not path.is_file():
        v.problem = Problem("archive_missing", mark.first_seq, f"archive {mark.file} "
                            f"(entries {mark.first_seq}..{mark.through_seq}) is missing")
        return False
    verify_export(read_lines(path), walk)
    if v.ok and hashlib.sha256(path.read_bytes()).hexdigest() != mark.sha256:
        v.problem = Problem("edited", mark.first_seq, f"archive {mark.file} is not the file "
                            "that was archived (its SHA-256 differs)")
    if v.ok and (v.head_seq, v.head_hash) != (mark.through_seq, mark.last_hash):
        v.problem = Problem("edited", v.head_seq, f"archive {mark.file} does not end at its "
                            f"mark (entry {mark.through_seq})")
    return v.ok
