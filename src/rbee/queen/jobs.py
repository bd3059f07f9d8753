"""Jobs: run an operation in a task, fan its events out to any number of watchers, persist.

Events live in memory while a job runs (watchers read them from there, so a reconnect with
Last-Event-ID loses nothing) and are flushed to SQLite in batches; the terminal event and
the final state are written in one transaction. Exactly one terminal event per job.

Event ids are never reused. A queen that dies loses the events it had not flushed yet, though
clients may have seen them; the next queen closes such a job with an `error` event whose id,
RESTART_SEQ, is above any id a live job can use (emit enforces that), so whichever id a
client saw, resuming after it delivers the end. Neither a persisted high-water mark (a write
on the event path, and only as durable as the flush it races) nor run epochs in every id
(ids would stop being 0, 1, 2… within a job) buy more than this one reserved range.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from rbee.api.jobs import TERMINAL_EVENTS, EventType, JobEvent, JobSummary
from rbee.core.clock import Clock
from rbee.core.errors import JobNotFound, RbeeError
from rbee.queen.actor import ANONYMOUS, Actor
from rbee.storage.jobs import JobStore

logger = logging.getLogger(__name__)
FLUSH_SECONDS = 0.2
# Ids 0 … RESTART_SEQ - 1 belong to the run that executes a job; RESTART_SEQ is the id of the
# event a later queen closes it with. 2**40 events would take a job centuries at any real
# token rate; the limit is enforced anyway, and the id stays exact in JSON/JavaScript numbers.
RESTART_SEQ = 2**40


class JobTooLong(RbeeError):
    """A job tried to emit more events than its share of ids (see RESTART_SEQ)."""

    code = "job_too_long"


@dataclass(frozen=True)
class FinishedJob:
    """How a job ended (for the audit log): no request content, only what it touched."""

    id: str
    operation: str
    state: str
    subject: str | None
    code: str | None
    seconds: float
    actor: Actor = ANONYMOUS  # who submitted it


@dataclass
class LiveJob:
    id: str
    operation: str
    subject: str | None = None
    started: float = 0.0
    actor: Actor = ANONYMOUS
    events: list[JobEvent] = field(default_factory=list)
    flushed: int = 0
    updated: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    finished: bool = False
    ending: asyncio.Future[None] | None = None  # its end, recorded for a body that never ran

    def emit(self, event: EventType, data: dict[str, Any]) -> JobEvent:
        seq = len(self.events)
        if seq >= RESTART_SEQ - 1:  # RESTART_SEQ - 1 is kept for this job's terminal event
            raise JobTooLong(f"job {self.id} reached the limit of {RESTART_SEQ - 1} events")
        e = JobEvent(seq=seq, event=event, data=data)
        self.publish(e)
        return e

    def publish(self, e: JobEvent) -> None:
        self.events.append(e)
        waiter, self.updated = self.updated, asyncio.Event()
        waiter.set()


class JobContext:
    """What an operation sees: its job's event helpers."""

    def __init__(self, job: LiveJob) -> None:
        self._job = job
        self.job_id = job.id
        self.actor = job.actor  # who submitted it (a script's history names the key)

    def narrate(self, action: str, message: str, actor: str = "queen") -> None:
        self._job.emit("narration", {"actor": actor, "action": action, "message": message})

    def progress(self, stage: str, fraction: float, **extra: Any) -> None:
        self._job.emit("progress", {"stage": stage, "fraction": round(fraction, 4), **extra})

    def token(self, text: str, index: int) -> None:
        self._job.emit("token", {"t": text, "i": index})


Runner = Callable[[JobContext, BaseModel], Awaitable[dict[str, Any] | None]]


def _subject(request: dict[str, Any]) -> str | None:
    """What a job acts on: a hive, a script, a worker or a model (never a prompt)."""
    for key in ("hive_id", "name", "worker_id", "model"):
        value = request.get(key)
        if isinstance(value, str):
            version = request.get("version")  # a script's rollback: which version
            if key == "name" and isinstance(version, int) and not isinstance(version, bool):
                return f"{value}@v{version}"
            return value
    return None


class JobManager:
    def __init__(self, store: JobStore, clock: Clock, runner: Runner, *,
                 on_finish: Callable[[FinishedJob], None] | None = None) -> None:
        self._store = store
        self._on_finish = on_finish
        self._clock = clock
        self._runner = runner
        self._live: dict[str, LiveJob] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Close out jobs a previous queen left running, then start the flush loop."""
        await asyncio.to_thread(self._close_abandoned)
        self._flusher = asyncio.create_task(self._flush_loop(), name="job-flush")

    def _close_abandoned(self) -> None:
        message = "the queen restarted before this job finished"
        event = JobEvent(seq=RESTART_SEQ, event="error",
                         data={"message": message, "code": "queen_restarted"})
        for job_id in self._store.unfinished():
            self._store.finish(job_id, "error", self._clock.time(), None, message, [event])

    async def stop(self) -> None:
        for job in list(self._live.values()):
            if job.task is not None:
                job.task.cancel()
        tasks = [j.task for j in self._live.values() if j.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=3.0)
        if self._flusher is not None:
            self._flusher.cancel()
        await asyncio.to_thread(self._flush_all)

    def submit(self, operation: str, op: BaseModel, request: dict[str, Any],
               tenant_id: str | None = None, actor: Actor = ANONYMOUS) -> str:
        job_id = f"job-{uuid.uuid4()}"
        # The actor's user owns it too, so a GDPR export or erasure finds it (queen.gdpr).
        self._store.create(job_id, operation, request, self._clock.time(), tenant_id,
                           actor.user_id)
        job = LiveJob(id=job_id, operation=operation, subject=_subject(request),
                      started=self._clock.monotonic(), actor=actor)
        self._live[job_id] = job
        job.task = asyncio.create_task(self._run(job, op), name=job_id)
        job.task.add_done_callback(lambda task: self._ended(job, task))
        return job_id

    def _ended(self, job: LiveJob, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never runs its body (so never records its
        end): without this the job would stay queued, live and watched forever."""
        if job.finished:
            return
        cancelled = task.cancelled()
        job.ending = asyncio.ensure_future(self._finish(
            job, "cancelled" if cancelled else "error", None,
            "cancelled by request" if cancelled else "internal error: the job ended early",
            code=None if cancelled else "internal"))

    def on_done(self, job_id: str, fn: Callable[[], None]) -> None:
        """Run `fn` once the job's task has ended, however (even cancelled before it ran)."""
        job = self._live.get(job_id)
        if job is not None and job.task is not None:
            job.task.add_done_callback(lambda _: fn())

    async def _run(self, job: LiveJob, op: BaseModel) -> None:
        try:
            await asyncio.to_thread(self._store.set_state, job.id, "running")
            result = await self._runner(JobContext(job), op)
            if result is not None:
                job.emit("result", result)
        except asyncio.CancelledError:
            await self._finish(job, "cancelled", None, "cancelled by request")
            return
        except RbeeError as exc:
            await self._finish(job, "error", None, exc.message, code=exc.code)
            return
        except Exception as exc:
            logger.exception("job %s failed", job.id)
            await self._finish(job, "error", None, f"internal error: {type(exc).__name__}",
                               code="internal")
            return
        await self._finish(job, "done", result, None)

    async def _finish(self, job: LiveJob, state: str, result: dict[str, Any] | None,
                      error: str | None, code: str | None = None) -> None:
        if job.finished:
            return
        job.finished = True
        data: dict[str, Any] = {} if state == "done" else {"message": error}
        if code:
            data["code"] = code
        kind: EventType = "done" if state == "done" else state  # type: ignore[assignment]
        terminal = JobEvent(seq=len(job.events), event=kind, data=data)
        pending = [*job.events[job.flushed:], terminal]
        job.flushed = terminal.seq + 1
        # Persist before watchers see the end, so a client that saw `done` reads `done` back.
        # Shielded: a cancelled job must still record how it ended.
        await asyncio.shield(asyncio.to_thread(
            self._store.finish, job.id, state, self._clock.time(), result, error, pending))
        job.publish(terminal)
        self._live.pop(job.id, None)
        if self._on_finish is not None:
            self._on_finish(FinishedJob(job.id, job.operation, state, job.subject, code,
                                        self._clock.monotonic() - job.started, job.actor))

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await asyncio.to_thread(self._flush_all)

    def _flush_all(self) -> None:
        for job in list(self._live.values()):
            end = len(job.events)
            if end > job.flushed and not job.finished:
                self._store.append(job.id, job.events[job.flushed:end])
                job.flushed = end

    async def cancel(self, job_id: str) -> JobSummary:
        job = self._live.get(job_id)
        if job is not None and job.task is not None and not job.finished:
            job.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({job.task}, timeout=5.0)
                if job.ending is not None:  # set by then: the task's first done callback
                    await asyncio.wait({job.ending}, timeout=5.0)
        return self.summary(job_id)

    def summary(self, job_id: str) -> JobSummary:
        found = self._store.get(job_id)
        if found is None:
            raise JobNotFound(f"no job {job_id!r}", param="job_id")
        return found

    def check_owner(self, job_id: str, may_see: Callable[[str | None], bool]) -> None:
        """JobNotFound unless the job exists and `may_see` its tenant: another tenant's job
        is answered as if there were none (its id says nothing)."""
        exists, tenant_id = self._store.owner(job_id)
        if not exists or not may_see(tenant_id):
            raise JobNotFound(f"no job {job_id!r}", param="job_id")

    def running(self) -> list[tuple[str, str, str | None, str | None]]:
        """(id, operation, subject, tenant id) of each job still running (the dashboard)."""
        return [(j.id, j.operation, j.subject, j.actor.tenant_id)
                for j in self._live.values() if not j.finished]

    def recent(self, limit: int, state: str | None,
               tenant_id: str | None = None) -> list[JobSummary]:
        return self._store.recent(limit, state, tenant_id)

    async def events(self, job_id: str, after: int = -1, keepalive: float | None = None
                     ) -> AsyncIterator[JobEvent | None]:
        """Every event after `after`, live ones as they happen, ending with the terminal one.

        Yields None when nothing happened for `keepalive` seconds (time for a comment frame).
        """
        job = self._live.get(job_id)
        if job is None:
            for e in await asyncio.to_thread(self._stored_events, job_id, after):
                yield e
            return
        index = after + 1
        while True:
            waiter = job.updated
            while index < len(job.events):
                e = job.events[index]
                index += 1
                yield e
                if e.event in TERMINAL_EVENTS:
                    return
            if job.events and job.events[-1].event in TERMINAL_EVENTS:
                # Ended, and the loop above never reached the terminal event: `after` was
                # its id (seen: nothing more) or one this job never sent (send the end).
                if after > job.events[-1].seq:
                    yield job.events[-1]
                return
            try:
                await asyncio.wait_for(waiter.wait(), keepalive)
            except TimeoutError:
                yield None

    def _stored_events(self, job_id: str, after: int) -> list[JobEvent]:
        """A finished job's events after `after` (from any run): never an empty answer for a
        resume that has not seen the end."""
        stored = self._store.events(job_id, after)
        if stored:
            return stored
        last = self._store.last_event(job_id)
        if last is None:
            if self._store.get(job_id) is None:
                raise JobNotFound(f"no job {job_id!r}", param="job_id")
            return []
        # Nothing after `after`: it was the terminal event's id (seen: nothing more), or an id
        # past it, which this job never sent (send the end rather than an empty stream).
        return [last] if last.event in TERMINAL_EVENTS and after > last.seq else []

    def last_event(self, job_id: str, event: str | None = None) -> JobEvent | None:
        """The job's latest event (of type `event`, if given): from memory while it runs
        (the store only has what was flushed), from the store once it ended."""
        job = self._live.get(job_id)
        if job is None:
            last = self._store.last_event(job_id)
            return last if last is not None and event in (None, last.event) else None
        return next((e for e in reversed(job.events) if event in (None, e.event)), None)

    def of_operation(self, operation: str, limit: int, after: str | None = None,
                     newest_first: bool = True, tenant_id: str | None = None
                     ) -> list[JobSummary]:
        return self._store.of_operation(operation, limit, after, newest_first, tenant_id)

    async def delete(self, job_id: str) -> bool:
        """Cancel the job if it runs, then forget it (its events too). False, and nothing
        deleted, while it is still ending: its last events are yet to be written."""
        await self.cancel(job_id)
        if job_id in self._live:
            return False
        await asyncio.to_thread(self._store.delete, job_id)
        return True

    def exists_live(self, job_id: str) -> bool:
        return job_id in self._live
