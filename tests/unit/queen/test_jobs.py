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


async def test_a_job_cancelled_before_it_ever_ran_still_ends() -> None:
    """Cancelled in the same step as its submission, the task never runs its body: the job
    must still end cancelled (not stay queued, live and watched forever)."""
    ran: list[str] = []

    async def runner(ctx: JobContext, op: BaseModel) -> None:
        ran.append(ctx.job_id)

    jobs, store = manager(runner)
    await jobs.start()
    job_id = jobs.submit("status", OP, {})
    summary = await jobs.cancel(job_id)  # no step in between: the task has not started
    assert ran == [] and summary.state == "cancelled"
    assert await collect(jobs, job_id) == [(0, "cancelled")]
    assert [e.event for e in store.events(job_id)] == ["cancelled"]
    assert jobs.running() == []
    await jobs.stop()


async def test_a_job_cancelled_while_it_is_marked_running_still_ends() -> None:
    """The first step hands `set_state` to a thread (a busy database makes that long); a
    cancel meanwhile must end the job like any other."""
    import threading

    release = threading.Event()

    async def runner(ctx: JobContext, op: BaseModel) -> None:
        raise AssertionError("never reached")

    jobs, store = manager(runner)
    await jobs.start()
    slow = store.set_state

    def blocked(job_id: str, state: str) -> None:
        release.wait(5)
        slow(job_id, state)

    store.set_state = blocked  # type: ignore[method-assign]
    job_id = jobs.submit("status", OP, {})
    await asyncio.sleep(0.05)  # the task is in the thread hop now
    cancelling = asyncio.ensure_future(jobs.cancel(job_id))
    await asyncio.sleep(0.05)
    release.set()
    assert (await cancelling).state == "cancelled"
    assert await collect(jobs, job_id) == [(0, "cancelled")]
    assert jobs.running() == []
    for _ in range(100):  # the blocked "running" write lands late: it must not win
        await asyncio.sleep(0.01)
    assert store.get(job_id).state == "cancelled"  # type: ignore[union-attr]
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


async def test_after_a_crash_the_closing_event_reuses_no_id_and_every_seen_id_resumes_to_it(
        tmp_path: Any) -> None:
    """A queen died with events 5..9 seen by a client but not yet flushed (every 200 ms):
    the next queen's closing event must come after every one of them."""
    from rbee.api.jobs import JobEvent

    db = str(tmp_path / "q.db")
    crashed = JobStore(connect(db))
    crashed.create("job-1", "infer", {}, 1.0)
    crashed.set_state("job-1", "running")
    crashed.append("job-1", [JobEvent(seq=i, event="token", data={"t": "a", "i": i})
                             for i in range(5)])
    seen = range(10)
    jobs, _ = manager(None, db)
    await jobs.start()
    for after in [-1, *seen]:
        events = await collect(jobs, "job-1", after)
        assert events[-1][1] == "error" and events[-1][0] > max(seen), after
        assert all(seq > after for seq, _ in events)
    assert await collect(jobs, "job-1", events[-1][0]) == []  # saw the end: nothing more
    await jobs.stop()


async def test_a_resume_past_the_end_of_a_finished_job_gets_its_terminal_event() -> None:
    async def runner(ctx: JobContext, op: BaseModel) -> None:
        ctx.token("a", 0)

    jobs, _ = manager(runner)
    await jobs.start()
    job_id = jobs.submit("status", OP, {})
    assert await collect(jobs, job_id) == [(0, "token"), (1, "done")]
    assert await collect(jobs, job_id, after=1) == []  # the terminal's own id: seen it
    assert await collect(jobs, job_id, after=7) == [(1, "done")]  # an id never sent
    await jobs.stop()


async def test_a_resume_past_the_end_of_a_live_job_gets_its_terminal_event() -> None:
    gate = asyncio.Event()

    async def runner(ctx: JobContext, op: BaseModel) -> None:
        ctx.token("a", 0)
        await gate.wait()

    jobs, _ = manager(runner)
    await jobs.start()
    job_id = jobs.submit("status", OP, {})
    watcher = asyncio.create_task(collect(jobs, job_id, after=7))
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.wait_for(watcher, 5) == [(1, "done")]
    await jobs.stop()


async def test_a_job_cannot_reach_the_id_kept_for_a_restarts_closing_event(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import rbee.queen.jobs as jobs_module

    monkeypatch.setattr(jobs_module, "RESTART_SEQ", 4)

    async def runner(ctx: JobContext, op: BaseModel) -> dict[str, Any]:
        for i in range(10):
            ctx.token("a", i)
        return {"never": "sent"}

    jobs, _ = manager(runner)
    await jobs.start()
    job_id = jobs.submit("status", OP, {})
    events = [e async for e in jobs.events(job_id) if e is not None]
    assert [e.seq for e in events] == [0, 1, 2, 3]
    assert events[-1].event == "error" and events[-1].data["code"] == "job_too_long"
    await jobs.stop()
