"""A starting worker's readiness arrives with its hive's telemetry: nothing polls."""

from __future__ import annotations

import asyncio
from typing import cast

from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.states import WorkerState
from rbee.queen.dispatch import Dispatcher, Silent
from rbee.queen.hive_client import HiveClient
from rbee.queen.registry import Registry

CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=8 << 30, memory_free=8 << 30)


def _worker(state: WorkerState) -> WorkerInfo:
    return WorkerInfo(id="w1", hive_id="h1", model="m", model_path="/m", device="cpu",
                      engine="fake", url="http://w1", state=state)


class AskedHive:
    """A hive that says 'loading' whenever asked, and counts the asks."""

    def __init__(self) -> None:
        self.asked = 0

    async def get_worker(self, hive_id: str, url: str, worker_id: str) -> WorkerInfo:
        self.asked += 1
        return _worker(WorkerState.LOADING)


def _report(registry: Registry, *workers: WorkerInfo) -> None:
    registry.report(HiveTelemetry(hive_id="h1", url="http://h1", version="0", pid=1,
                                  devices=[CPU], workers=list(workers)))


async def test_ready_comes_from_telemetry_without_polling_the_hive() -> None:
    registry = Registry(FakeClock(), 2.0)
    _report(registry)
    hive = AskedHive()
    dispatcher = Dispatcher(registry, cast(HiveClient, hive), spawn_timeout=30,
                            default_threads=None, ask_every=30.0)
    waiting = asyncio.ensure_future(dispatcher.wait_ready(_worker(WorkerState.STARTING),
                                                          Silent()))
    await asyncio.sleep(0.05)
    assert not waiting.done() and hive.asked == 1  # asked once, then it waits on telemetry
    _report(registry, _worker(WorkerState.READY))  # the hive pushes the change
    ready = await asyncio.wait_for(waiting, 1.0)
    assert ready.state is WorkerState.READY
    assert hive.asked == 1


async def test_the_hive_is_asked_again_when_telemetry_is_quiet() -> None:
    registry = Registry(FakeClock(), 2.0)
    _report(registry)
    hive = AskedHive()
    dispatcher = Dispatcher(registry, cast(HiveClient, hive), spawn_timeout=30,
                            default_threads=None, ask_every=0.05)
    waiting = asyncio.ensure_future(dispatcher.wait_ready(_worker(WorkerState.STARTING),
                                                          Silent()))
    await asyncio.sleep(0.3)
    assert 3 <= hive.asked <= 8
    waiting.cancel()


async def test_a_scripts_log_lines_are_narrated_with_the_route() -> None:
    from rbee.models.catalog import ModelRef
    from rbee.queen.dispatch import Hints
    from rbee.scheduler.lua import LuaPolicy

    registry = Registry(FakeClock(), 2.0)
    _report(registry, _worker(WorkerState.READY))
    dispatcher = Dispatcher(registry, cast(HiveClient, AskedHive()), spawn_timeout=30,
                            default_threads=None)
    dispatcher.policy.use(LuaPolicy('function route(job, workers)\n'
                                    '  log("routing " .. #workers)\n'
                                    '  return workers:first()\nend', "t"))
    said: list[tuple[str, str]] = []

    class Notes(Silent):
        def narrate(self, action: str, message: str, actor: str = "queen") -> None:
            said.append((action, message))

    worker = await dispatcher.worker_for(ModelRef("builtin", "m", "fake"), Hints(), Notes())
    assert worker.id == "w1"
    assert said == [("route", "script log: routing 1")]


def test_start_times_of_workers_never_seen_ready_are_forgotten() -> None:
    # A worker whose hive vanished, or whose only waiter was cancelled, is never seen ready:
    # its start time must not stay in the map for the life of the queen.
    dispatcher = Dispatcher(Registry(FakeClock(), 2.0), cast(HiveClient, AskedHive()),
                            spawn_timeout=30, default_threads=None)
    for second in range(1000):
        dispatcher._asked(f"w{second}", float(second))
    assert set(dispatcher._spawned_at) == {f"w{s}" for s in range(939, 1000)}
