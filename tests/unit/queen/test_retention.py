"""Retention (issue 13): finished jobs, their events and artifacts, and stored Responses
older than the history retention are deleted; artifacts may go sooner; running jobs stay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from rbee.core.clock import FakeClock
from rbee.queen.retention import Purged, Retention
from rbee.storage.artifacts import ArtifactStore
from rbee.storage.db import connect
from rbee.storage.jobs import JobStore
from rbee.storage.responses import ResponseStore

DAY = 86_400.0


async def _bytes() -> AsyncIterator[bytes]:
    yield b"mp4"


async def test_old_history_goes_with_its_artifacts_running_jobs_stay(tmp_path: Path) -> None:
    clock = FakeClock(start=1_000_000.0)
    db = connect(tmp_path / "queen.db")
    jobs, responses = JobStore(db), ResponseStore(db)
    artifacts = ArtifactStore(tmp_path / "artifacts", clock)
    retention = Retention(jobs, responses, artifacts, clock, history=30 * DAY,
                          artifacts_for=7 * DAY)
    assert retention.period() == 3600.0  # a tenth of 7 days, capped at an hour
    jobs.create("old", "video", {}, clock.time())
    jobs.finish("old", "done", clock.time(), {"artifact_id": "x"}, None, [])
    jobs.create("running", "infer", {}, clock.time())
    old_video = await artifacts.put(_bytes(), media_type="video/mp4", owner="old",
                                    filename="a.mp4")
    responses.save("resp_old", clock.time(), {"id": "resp_old"}, [])
    clock.advance(8 * DAY)  # past the artifacts' retention, not the history's
    jobs.create("new", "video", {}, clock.time())
    jobs.finish("new", "done", clock.time(), None, None, [])
    new_video = await artifacts.put(_bytes(), media_type="video/mp4", owner="new",
                                    filename="b.mp4")
    assert retention.purge_once() == Purged(jobs=0, responses=0, artifacts=1)
    assert [a.id for a in artifacts.list()] == [new_video.id] and old_video.id != new_video.id
    clock.advance(23 * DAY)  # 31 days after "old", 23 after "new" (its artifact is too old)
    assert retention.purge_once() == Purged(jobs=1, responses=1, artifacts=1)
    assert jobs.get("old") is None and responses.get("resp_old") is None
    assert jobs.get("running") is not None and jobs.get("new") is not None
    clock.advance(10 * DAY)  # "new" is old now: its artifact goes with it
    new_artifacts = ArtifactStore(tmp_path / "artifacts", clock)
    keep_all = Retention(jobs, responses, new_artifacts, clock, history=30 * DAY,
                         artifacts_for=0)
    await new_artifacts.put(_bytes(), media_type="video/mp4", owner="new", filename="c.mp4")
    assert keep_all.purge_once() == Purged(jobs=1, responses=0, artifacts=1)
    assert new_artifacts.list() == []
    assert jobs.get("running") is not None
    assert Retention(jobs, responses, artifacts, clock, history=0, artifacts_for=0
                     ).period() is None
    db.close()
