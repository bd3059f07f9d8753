"""A real worker process tells a real hive supervisor its progress and readiness by pipe."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from rbee.api.cluster import SpawnWorker
from rbee.core.states import WorkerState
from rbee.hive.launcher import SubprocessLauncher
from rbee.hive.supervisor import Supervisor, SupervisorConfig

pytestmark = pytest.mark.e2e


def _supervisor(home: Path) -> Supervisor:
    config = SupervisorConfig(hive_id="h", bind_host="127.0.0.1", advertise_host="127.0.0.1",
                              home=home, stop_grace=2.0, ready_timeout=60.0)
    return Supervisor(config, SubprocessLauncher(), {"cpu"})


async def test_a_worker_reports_its_load_and_serves_the_moment_it_says_ready(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBEE_WORKER_FAKE_LOAD_SECONDS", "1.2")  # 4 steps of 0.3 s
    sup = _supervisor(tmp_path)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    seen: set[tuple[float, str]] = set()
    async with asyncio.timeout(60):
        while (info := sup.get("w1")).state is not WorkerState.READY:
            assert info.state in (WorkerState.STARTING, WorkerState.LOADING), info
            seen.add((info.progress, info.stage))
            await asyncio.sleep(0.01)
    # Some of the engine's steps, as the second half of the bar (the first: download).
    assert {p for p, stage in seen if stage == "loading weights"} & {0.5, 0.625, 0.75, 0.875}
    # "ready" may come before uvicorn serves: the worker listens first, so nothing is refused.
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{info.url}/ready", timeout=10)
    assert r.status_code == 200 and r.json()["state"] == "ready"
    await sup.stop_all()


async def test_a_worker_that_cannot_start_is_a_crash_with_its_exit_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBEE_WORKER_STALL_TIMEOUT", "-1")  # refused by its settings: exit 2
    sup = _supervisor(tmp_path)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    async with asyncio.timeout(60):
        while sup.get("w1").state is not WorkerState.CRASHED:
            await asyncio.sleep(0.02)
    assert "exited with code 2 before it was ready" in (sup.get("w1").error or "")
    await sup.stop_all()
