"""The AuditLog service: batched writes off the loop, nothing lost on close, a consistent
chain under concurrent recording, jobs and inference requests recorded without text."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from rbee.api.cluster import WorkerInfo
from rbee.core.audit_chain import Entry
from rbee.core.clock import FakeClock
from rbee.core.errors import WorkerUnavailable
from rbee.queen.actor import Actor
from rbee.queen.app import create_app
from rbee.queen.audit import AuditLog
from rbee.queen.audit_trail import Trail, usage_of
from rbee.queen.jobs import FinishedJob
from rbee.queen.services import build_services
from rbee.queen.settings import QueenSettings
from rbee.storage.audit import AuditStore, Filters, Pending
from rbee.storage.db import connect


def audit_log(path: Path, clock: FakeClock | None = None) -> AuditLog:
    return AuditLog(AuditStore(connect(path)), clock or FakeClock(),
                    archive_dir=path.parent / "archive", flush_interval=0.01)


async def test_concurrent_records_from_tasks_and_threads_keep_one_valid_chain(
        tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    writer = asyncio.create_task(log.run())

    async def task(n: int) -> None:
        for i in range(50):
            log.record("inference", actor=Actor(user_id=f"u{n}"), outcome="ok",
                       details={"n": n, "i": i})
            if i % 10 == 0:
                await asyncio.sleep(0)

    def thread(n: int) -> None:
        for i in range(50):
            log.record("job.status", outcome="ok", details={"thread": n, "i": i})

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    await asyncio.gather(*(task(n) for n in range(8)))
    for t in threads:
        t.join()
    await log.close(writer)
    verdict = await log.verify()
    assert verdict.ok and verdict.entries == 12 * 50


async def test_the_writer_batches_off_the_loop_and_close_loses_nothing(
        tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    writer = asyncio.create_task(log.run())
    for i in range(100):
        log.record("x", outcome="ok", details={"i": i})
    await asyncio.sleep(0.2)
    assert len(await log.page(Filters(limit=1000))) == 100  # written by the writer
    for i in range(5):  # recorded, then a clean stop at once: still written
        log.record("y", outcome="ok", details={"i": i})
    await log.close(writer)
    again = audit_log(tmp_path / "q.db")
    assert len(await again.page(Filters(action="y"))) == 5
    log.record("late", outcome="ok")  # after shutdown (a stream closing late): written at once
    assert len(await again.page(Filters(action="late"))) == 1


class DiskFullOnce(AuditStore):
    def __init__(self, path: Path) -> None:
        super().__init__(connect(path))
        self.failures = 1

    def append(self, batch: Sequence[Pending]) -> tuple[int, str]:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        return super().append(batch)


async def test_a_failed_write_keeps_the_entries_for_the_next_try(tmp_path: Path) -> None:
    log = AuditLog(DiskFullOnce(tmp_path / "q.db"), FakeClock(), archive_dir=tmp_path)
    log.record("a", outcome="ok")
    with pytest.raises(OSError, match="disk full"):  # the writer logs it and retries
        log.flush_now()
    log.record("b", outcome="ok")
    log.flush_now()
    assert [e.action for e, _ in await log.page(Filters())] == ["a", "b"]
    assert (await log.verify()).ok


async def test_jobs_are_recorded_and_admin_operations_as_admin_changes(
        tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    log.job(FinishedJob("job-1", "script_save", "done", "fair", None, 0.25))
    log.job(FinishedJob("job-2", "hive_install", "error", "gpu-box", "ssh_failed", 3.0))
    log.job(FinishedJob("job-3", "infer", "cancelled", "rbee-fake", None, 1.0))
    log.job(FinishedJob("job-4", "hive_start", "error", "h" * 5_000_000, "not_found", 0.0))
    found = [(e.action, e.subject, e.outcome) for e, _ in await log.page(Filters())]
    assert found == [("admin.script.save", "fair", "ok"),
                     ("admin.hive.install", "gpu-box", "error"),
                     ("job.infer", "rbee-fake", "cancelled"),
                     ("admin.hive.start", "h" * 200, "error")]  # a hostile name, bounded


async def test_an_inference_trail_records_once_with_facts_only(tmp_path: Path) -> None:
    clock = FakeClock()
    log = audit_log(tmp_path / "q.db", clock)
    trail = Trail(log, "/v1/chat/completions", "smollm2", False, lambda hive: "eu-west")
    trail.served(WorkerInfo(id="w1", hive_id="h1", model="smollm2", model_path="/m",
                            device="cpu", engine="fake", url="http://w", state="ready"))
    clock.advance(0.5)
    body = b'{"choices":[{"message":{"content":"secret"}}],"usage":{"prompt_tokens":4,' \
           b'"completion_tokens":2,"total_tokens":6}}'
    trail.end("ok", status=200, body=body)
    trail.failed(WorkerUnavailable("late"))  # a second end is ignored
    [(entry, _)] = await log.page(Filters())
    assert entry.details == {"path": "/v1/chat/completions", "stream": False, "status": 200,
                             "code": None, "worker": "w1", "hive": "h1", "region": "eu-west",
                             "usage": {"prompt_tokens": 4, "completion_tokens": 2,
                                       "total_tokens": 6}, "duration_ms": 500.0}
    assert "secret" not in str(entry)


async def test_a_failed_request_records_its_error_code(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    Trail(log, "/v1/embeddings", "minilm", False, lambda hive: None).failed(
        WorkerUnavailable("gone"))
    Trail(log, "/v1/embeddings", "minilm", True, lambda hive: None).failed(
        asyncio.CancelledError())
    found = [(e.outcome, e.details["code"]) for e, _ in await log.page(Filters())]
    assert found == [("error", "worker_unavailable"), ("cancelled", None)]


def test_usage_is_read_from_the_end_without_parsing_the_rest() -> None:
    assert usage_of(b'{"data": [1, 2], "usage": {"prompt_tokens": 3, "total_tokens": 3}}') \
        == {"prompt_tokens": 3, "total_tokens": 3}
    for hostile in (b"", b'{"usage": null}', b'{"usage": {', b'"usage"', b'\xff"usage":{}',
                    b'{"usage": {"prompt_tokens": "3", "x": true}}'):
        assert usage_of(hostile) in (None, {})


async def test_a_refused_token_is_audited_without_the_token(tmp_path: Path) -> None:
    settings = QueenSettings(api_token="right-token", state_dir=tmp_path, local_hive=False)
    services = build_services(settings)
    app = create_app(settings, services)
    app.state.services = services  # type: ignore[attr-defined]  # what the lifespan does
    transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        r = await client.get("/v1/models", headers={"Authorization": "Bearer wrong-token"})
    assert r.status_code == 401
    [(entry, clear)] = await services.audit.page(Filters(action="auth."))
    assert entry.outcome == "denied" and entry.details["path"] == "/v1/models"
    assert entry.actor_ref is not None and entry.actor["client_ip"].startswith("pn:")
    assert clear == [{"role": "actor", "client_ip": "198.51.100.9"}]
    services.db.close()
    assert not stored_anywhere(tmp_path, b"wrong-token")


def stored_anywhere(state: Path, secret: bytes) -> bool:
    """In the database or its WAL."""
    return any(secret in f.read_bytes() for f in state.glob("queen.db*"))


class SlowReads(AuditStore):
    """Reads that take a while: batches land while a walk is under way."""

    def chunk(self, after: int, through: int | None = None) -> list[Entry]:
        found = super().chunk(after, through)
        time.sleep(0.02)
        return found


async def test_verify_while_entries_keep_coming_reports_no_false_break(
        tmp_path: Path) -> None:
    log = AuditLog(SlowReads(connect(tmp_path / "q.db")), FakeClock(), archive_dir=tmp_path,
                   flush_interval=0.005)
    writer = asyncio.create_task(log.run())
    stop = threading.Event()

    def keep_recording() -> None:
        while not stop.wait(0.0005):  # a busy queen's rate, not faster than SQLite writes
            log.record("inference", outcome="ok")

    recorder = threading.Thread(target=keep_recording)
    recorder.start()
    try:
        for _ in range(10):
            verdict = await log.verify()
            assert verdict.ok, verdict.problem
    finally:
        stop.set()
        recorder.join()
    await log.close(writer)
    assert (await log.verify()).ok


class DiskFull(AuditStore):
    def __init__(self, path: Path) -> None:
        super().__init__(connect(path))
        self.full = True

    def append(self, batch: Sequence[Pending]) -> tuple[int, str]:
        if self.full:
            raise OSError("disk full")
        return super().append(batch)


async def test_while_writes_fail_memory_is_bounded_and_the_gap_is_recorded(
        tmp_path: Path) -> None:
    """A disk full for hours must not grow the queen's memory with every request's entry:
    past `max_pending` entries are counted, and the chain records how many are missing."""
    store = DiskFull(tmp_path / "q.db")
    log = AuditLog(store, FakeClock(), archive_dir=tmp_path, max_pending=10)
    for i in range(25):
        log.record("inference", outcome="ok", details={"i": i})
        if i % 7 == 0:
            with pytest.raises(OSError, match="disk full"):
                log.flush_now()
    store.full = False
    log.record("after", outcome="ok")  # counted too: the buffer is still full
    log.flush_now()
    entries = [e for e, _ in await log.page(Filters(limit=100))]
    assert [e.details["i"] for e in entries if e.action == "inference"] == list(range(10))
    (gap,) = [e for e in entries if e.action == "audit.dropped"]
    assert gap.details == {"entries": 16} and gap.outcome == "error"
    assert (await log.verify()).ok
    log.record("later", outcome="ok")  # room again: kept
    log.flush_now()
    assert [e.action for e, _ in await log.page(Filters(action="later"))] == ["later"]
