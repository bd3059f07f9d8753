from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from rbee.api.jobs import StatusOp
from rbee.core.clock import FakeClock
from rbee.core.errors import JobNotFound, NoCapacity
from rbee.queen.jobs import JobContext, JobManager
from rbee.storage.db import connect
from rbee.storage.jobs import JobStore

TERMINAL = {"done", "error", "cancelled"}
OP = StatusOp(operation="status")


def manager(runner: Any, path: str = ":memory:") -> tuple[JobManager, JobStore]:
    store = JobStore(connect(path))
    return JobManager(store, FakeClock(), runner), store


async def collect(jobs: JobManager, job_id: str, after: int = -1) -> list[tuple[int, str]]:
    return [(e.seq, e.event) async for e in jobs.events(job_id, after) if e is not None]


async def test_success_emits_result_then_done_and_persists() -> None:
    async def runner(ctx: JobContext, op: BaseModel) -> dict[str, Any]:
        ctx.narrate("work", "working")
        ctx.token("a", 0)
        return {"answer": 42}

    jobs, store = manager(runner)
    await jobs.start()
    job_id = jobs.submit("status", OP, {"operation": "status"})
    assert await collect(jobs, job_id) == [(0, "narration"), (1, "token"), (2, "result"),
                                           (3, "done")]
    summary = jobs.summary(job_id)
    assert summary.state == "done" and summary.result == {"answer": 42}
    assert [e.event for e in store.events(job_id)] == ["narration", "token", "result", "done"]
    await jobs.stop()


@pytest.mark.parametrize(("exc", "code"), [(NoCapacity("full"), "no_capacity"),
                                           (ValueError("bug"), "internal")])
async def test_failure_is_exactly_one_error_event(exc: Exception, code: str) -> None:
    async def runner(ctx: JobContext, op: BaseModel) -> None:
        raise exc

    jobs, _ = manager(runner)
    await jobs.start()
    job_id = jobs.submit("status", OP, {})
    events = [e async for e in jobs.events(job_id) if e is not None]
    assert [e.event for e in events] == ["error"] and events[0].data["code"] == code
    assert jobs.summary(job_id).state == "error"
    await jobs.stop()


async def test_cancel_ends_with_one_cancelled_event() -> None:
    started = asyncio.Event()

    async def runner(ctx: JobContext, op: BaseModel) -> None:
        started.set()
        await asyncio.sleep(3600)

    jobs, _ = manager(runner)
    await jobs.start()
    job_id = jobs.submit("status", OP, {})
    await started.wait()
    assert (await jobs.cancel(job_id)).state == "cancelled"
    assert (await jobs.cancel(job_id)).state == "cancelled"
    assert await collect(jobs, job_id) == [(0, "cancelled")]
    await jobs.stop()


async def test_resume_after_an_event_id_and_keepalives() -> None:
    gate = asyncio.Event()

    async def runner(ctx: JobContext, op: BaseModel) -> None:
        for i in range(3):
            ctx.token(str(i), i)
        await gate.wait()

    jobs, _ = manager(runner)
    await jobs.start()
    job_id = jobs.submit("status", OP, {})
    stream = jobs.events(job_id, after=0, keepalive=0.01)
    seen = [await anext(stream), await anext(stream)]
    assert [e.seq for e in seen if e is not None] == [1, 2]
    assert await anext(stream) is None  # nothing new: a keep-alive
    gate.set()
    rest = [e async for e in stream if e is not None]
    assert [e.event for e in rest] == ["done"]
    await jobs.stop()


async def test_unknown_job() -> None:
    jobs, _ = manager(None)
    with pytest.raises(JobNotFound):
        jobs.summary("job-x")
    with pytest.raises(JobNotFound):
        await collect(jobs, "job-x")


async def test_restart_closes_unfinished_jobs_with_one_error(tmp_path: Any) -> None:
    db = str(tmp_path / "q.db")
    store = JobStore(connect(db))
    store.create("job-1", "infer", {}, 1.0)
    store.set_state("job-1", "running")
    from rbee.api.jobs import JobEvent

    store.append("job-1", [JobEvent(seq=0, event="token", data={"t": "a", "i": 0})])
    jobs, store2 = manager(None, db)
    await jobs.start()
    assert [e.event for e in store2.events("job-1")] == ["token", "error"]
    assert store2.get("job-1").state == "error"  # type: ignore[union-attr]
    await jobs.stop()
