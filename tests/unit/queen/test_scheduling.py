"""The queen's scheduling machinery with fakes: reservations, concurrent placements,
eviction, idle unload, admission (priorities, positions, 429)."""

from __future__ import annotations

import asyncio
import random
from typing import Any, cast

import pytest

from rbee import __version__
from rbee.api.cluster import Device, HiveTelemetry, SpawnWorker, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.errors import NoCapacity, QueueFull
from rbee.core.states import WorkerState
from rbee.models.catalog import ModelRef, parse_ref
from rbee.queen.admission import Admission
from rbee.queen.dispatch import Dispatcher, Hints, Silent
from rbee.queen.hive_client import HiveClient
from rbee.queen.registry import Registry
from rbee.queen.watchdog import IdleTTL, Watchdog

GB = 2**30
INTERVAL = 2.0


def device(did: str, kind: str, total: int) -> Device:
    return Device(id=did, kind=kind, name=did, memory_total=total,  # type: ignore[arg-type]
                  memory_free=total)


HIVES = {"rig": [device("cuda:0", "cuda", 24 * GB), device("cpu", "cpu", 64 * GB)],
         "mac": [device("metal:0", "metal", 32 * GB)]}


class FakeHives:
    """Spawns answer after a random short delay (so placements interleave)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.spawned: list[SpawnWorker] = []
        self.stopped: list[str] = []

    async def spawn(self, hive_id: str, url: str, spec: SpawnWorker) -> WorkerInfo:
        await asyncio.sleep(random.uniform(0, 0.003))
        self.spawned.append(spec)
        assert spec.worker_id is not None
        return WorkerInfo(id=spec.worker_id, hive_id=hive_id, model=spec.model, model_path="",
                          device=spec.device, engine="fake", url=f"http://{spec.worker_id}",
                          state=WorkerState.STARTING)

    async def stop_worker(self, hive_id: str, url: str, worker_id: str) -> WorkerInfo:
        self.stopped.append(worker_id)
        info = self.registry.find_worker(worker_id)
        assert info is not None
        return info.model_copy(update={"state": WorkerState.STOPPED})


def report(registry: Registry, hive: str, *workers: WorkerInfo) -> None:
    registry.report(HiveTelemetry(hive_id=hive, url=f"http://{hive}", version=__version__,
                                  pid=1, devices=HIVES[hive], workers=list(workers)))


def rig(sizes: dict[str, int], budget: int | None = None
        ) -> tuple[FakeClock, Registry, FakeHives, Dispatcher]:
    clock = FakeClock()
    registry = Registry(clock, INTERVAL, memory_budget=budget)
    for hive in HIVES:
        report(registry, hive)
    hives = FakeHives(registry)
    dispatcher = Dispatcher(registry, cast(HiveClient, hives), spawn_timeout=5,
                            default_threads=None, estimator=lambda ref: sizes[ref.name])
    return clock, registry, hives, dispatcher


def ready(info: WorkerInfo, memory: int | None = None) -> WorkerInfo:
    return info.model_copy(update={"state": WorkerState.READY, "memory_bytes": memory})


# A script decides on its own thread: between the snapshot and the reservation the event loop
# runs other placements, which must not take the same memory.
FIRST_FIT = """function place(model, devices)
  for _, d in ipairs(devices) do
    if d.memory_free >= model.size_bytes then return d end
  end
  return nil
end"""


@pytest.mark.parametrize("script", [None, FIRST_FIT], ids=["built-in", "script"])
async def test_concurrent_placements_never_over_commit_a_device(script: str | None) -> None:
    random.seed(7)
    sizes = {f"m{i}": random.randint(1, 20) * GB for i in range(60)}
    _, registry, _, dispatcher = rig(sizes)
    if script is not None:
        from rbee.scheduler.lua import LuaPolicy

        dispatcher.policy.use(LuaPolicy(script, "first-fit"))

    async def one(name: str) -> WorkerInfo | None:
        try:
            return await dispatcher.spawn(parse_ref(f"file:/models/{name}.gguf"), Hints(),
                                          Silent())
        except NoCapacity:
            return None

    # names resolve through parse_ref: give the estimator the parsed names
    sizes.update({parse_ref(f"file:/models/{n}.gguf").name: s for n, s in list(sizes.items())})
    results = await asyncio.gather(*(one(n) for n in list(sizes)[:60]))
    placed = [r for r in results if r is not None]
    assert placed and len(placed) < 60  # some fit, some could not
    reserved, _ = registry.reservations.totals()
    for hive, devices in HIVES.items():
        for dev in devices:
            assert reserved.get(f"{hive}/{dev.id}", 0) <= dev.memory_total
    if script is not None:
        assert dispatcher.policy.stats.calls >= len(placed)
        assert dispatcher.policy.stats.failures == 0
        dispatcher.policy.close()


async def test_reservations_follow_the_worker_and_learn_what_it_really_uses() -> None:
    _, registry, _, dispatcher = rig({"a": 10 * GB})
    info = await dispatcher.spawn(ModelRef("builtin", "a", "fake"), Hints(device="cpu"),
                                  Silent())
    assert registry.reservations.totals() == ({"rig/cpu": 10 * GB}, {"rig/cpu": 10 * GB})
    # not yet in the hive's telemetry (spawn answered first): kept
    report(registry, "rig")
    assert registry.reservations.get(info.id) is not None
    # ready, measured at 4 GB: the reservation becomes 4 GB + margin, and the model learns it
    report(registry, "rig", ready(info, 4 * GB))
    r = registry.reservations.get(info.id)
    assert r is not None and r.loaded and r.bytes == int(4 * GB * 1.1)
    assert dispatcher.need(ModelRef("builtin", "a", "fake")) == int(4 * GB * 1.1)
    # loaded: nothing pending (totals are cached between changes: this one must show)
    assert registry.reservations.totals() == ({"rig/cpu": int(4 * GB * 1.1)}, {})
    # gone from telemetry (crashed and pruned, or stopped): released
    report(registry, "rig")
    assert registry.reservations.totals() == ({}, {})


async def test_a_failed_spawn_gives_its_reservation_back() -> None:
    _, registry, hives, dispatcher = rig({"a": 10 * GB})

    async def broken(*_: Any) -> WorkerInfo:
        raise NoCapacity("hive refused")

    hives.spawn = broken  # type: ignore[method-assign]
    with pytest.raises(NoCapacity, match="hive refused"):
        await dispatcher.spawn(ModelRef("builtin", "a", "fake"), Hints(), Silent())
    assert registry.reservations.totals() == ({}, {})


async def test_a_model_too_big_for_the_budget_evicts_the_idle_one_and_narrates() -> None:
    clock, registry, hives, dispatcher = rig({"a": 3 * GB, "b": 3 * GB}, budget=4 * GB)
    first = await dispatcher.spawn(ModelRef("builtin", "a", "fake"),
                                   Hints(hive_id="rig", device="cpu"), Silent())
    clock.advance(60)
    report(registry, "rig", ready(first))
    report(registry, "mac")
    said: list[str] = []

    class Notes(Silent):
        def narrate(self, action: str, message: str, actor: str = "queen") -> None:
            said.append(f"{action}: {message}")

    second = await dispatcher.spawn(ModelRef("builtin", "b", "fake"),
                                    Hints(hive_id="rig", device="cpu"), Notes())
    assert hives.stopped == [first.id] and second.device == "cpu"
    assert any(s.startswith("evict: stopping idle " + first.id) for s in said)


async def test_kept_warm_workers_block_eviction_with_a_clear_error() -> None:
    _, registry, _, dispatcher = rig({"a": 3 * GB, "b": 3 * GB}, budget=4 * GB)
    first = await dispatcher.spawn(ModelRef("builtin", "a", "fake"),
                                   Hints(hive_id="rig", device="cpu", keep_warm=True), Silent())
    report(registry, "rig", ready(first))
    with pytest.raises(NoCapacity, match="insufficient memory") as info:
        await dispatcher.spawn(ModelRef("builtin", "b", "fake"),
                               Hints(hive_id="rig", device="cpu"), Silent())
    assert info.value.retry_after and info.value.retry_after > 0


async def test_idle_workers_are_unloaded_after_their_ttl_unless_kept_warm() -> None:
    clock, registry, hives, dispatcher = rig({"a": GB, "b": GB})
    a = await dispatcher.spawn(ModelRef("builtin", "a", "fake"), Hints(), Silent())
    b = await dispatcher.spawn(ModelRef("builtin", "b", "fake"), Hints(keep_warm=True),
                               Silent())
    report(registry, "rig", ready(a), ready(b))
    report(registry, "mac")
    watchdog = Watchdog(registry, dispatcher, INTERVAL, idle_ttl=IdleTTL(300, {"a": 30}))
    assert watchdog.idle_workers() == []  # first seen ready now
    clock.advance(31)
    report(registry, "rig", ready(a), ready(b))
    report(registry, "mac")
    assert watchdog.idle_workers() == [a.id]  # a's TTL is 30 s; b is kept warm
    registry.acquire(a.id)  # busy again: not idle
    assert watchdog.idle_workers() == []
    registry.release(a.id)
    clock.advance(31)
    report(registry, "rig", ready(a), ready(b))
    report(registry, "mac")
    watchdog.tick()
    await asyncio.sleep(0.01)
    assert hives.stopped == [a.id] and list(watchdog.unloaded) == [a.id]
    assert watchdog.unload_count == 1


async def test_admission_orders_by_priority_shows_positions_and_refuses_when_full() -> None:
    clock = FakeClock()
    admission = Admission(clock, max_queue=3, capacity=lambda model: 1)
    order: list[str] = []
    positions: dict[str, list[int]] = {}

    async def request(name: str, priority: str, hold: asyncio.Event) -> None:
        def seen(at: int, _length: int) -> None:
            positions.setdefault(name, []).append(at)

        async with admission.slot("m", priority, seen):
            order.append(name)
            await hold.wait()

    gate = asyncio.Event()
    first = asyncio.create_task(request("first", "interactive", gate))
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(request(n, p, gate)) for n, p in
             (("batch1", "batch"), ("batch2", "batch"), ("chat", "interactive"))]
    await asyncio.sleep(0)
    assert admission.queued("m") == 3 and admission.active("m") == 1
    with pytest.raises(QueueFull) as full:
        await admission.enter("m", "interactive")
    assert full.value.http_status == 429 and full.value.retry_after >= 1
    gate.set()
    await asyncio.gather(first, *tasks)
    assert order == ["first", "chat", "batch1", "batch2"]  # interactive jumps the batch ones
    assert positions["batch1"][0] == 1 and positions["chat"] == [1]
    assert positions["batch2"] == [2, 3, 2, 1]  # moved back when "chat" arrived
    assert admission.active("m") == 0 and admission.queued("m") == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_frees_nothing_it_did_not_hold() -> None:
    admission = Admission(FakeClock(), max_queue=5, capacity=lambda model: 1)
    ticket = await admission.enter("m")
    waiting = asyncio.create_task(admission.enter("m"))
    await asyncio.sleep(0)
    assert admission.queued("m") == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert admission.queued("m") == 0 and admission.active("m") == 1
    ticket.release()
    ticket.release()  # idempotent
    assert admission.active("m") == 0


async def test_gpu_placements_reserve_the_driver_context_and_keep_their_estimate() -> None:
    from rbee.models.estimate import ACCELERATOR_CONTEXT_BYTES
    from rbee.queen.services import GPU_CONTEXT_BYTES

    assert GPU_CONTEXT_BYTES == ACCELERATOR_CONTEXT_BYTES  # the queen's copy stays in step
    clock = FakeClock()
    registry = Registry(clock, INTERVAL)
    report(registry, "rig")
    dispatcher = Dispatcher(registry, cast(HiveClient, FakeHives(registry)), spawn_timeout=5,
                            default_threads=None, estimator=lambda ref: 10 * GB,
                            gpu_overhead=GPU_CONTEXT_BYTES)
    info = await dispatcher.spawn(ModelRef("builtin", "a", "fake"), Hints(), Silent())
    assert info.device == "cuda:0"
    expected = 10 * GB + GPU_CONTEXT_BYTES
    assert registry.reservations.totals()[0] == {"rig/cuda:0": expected}
    # the worker's RSS is not its VRAM: a GPU reservation is not "corrected" from it
    report(registry, "rig", ready(info, 300 * 2**20))
    assert registry.reservations.totals()[0] == {"rig/cuda:0": expected}
    # and a model that only fits the GPU without the context goes to the CPU instead
    big = await dispatcher.spawn(ModelRef("builtin", "a", "fake"), Hints(), Silent())
    assert big.device == "cuda:0"  # 24 − 10.5 = 13.5 GB left: 10.5 fits again
    third = await dispatcher.spawn(ModelRef("builtin", "a", "fake"), Hints(), Silent())
    assert third.device == "cpu"  # 3 GB left on the GPU


async def test_explain_shows_the_plan_the_dispatcher_then_executes() -> None:
    """Decide, then do: explain's decision and the dispatcher's are one computation."""
    from rbee.queen.decision import decide
    from rbee.scheduler.routing import RouteRequest

    _, registry, hives, dispatcher = rig({"a": 3 * GB, "b": 3 * GB}, budget=4 * GB)
    first = await dispatcher.spawn(ModelRef("builtin", "a", "fake"),
                                   Hints(hive_id="rig", device="cpu"), Silent())
    report(registry, "rig", ready(first, 3 * GB))
    ref, hints = ModelRef("builtin", "b", "fake"), Hints(hive_id="rig", device="cpu")
    decision = await decide(dispatcher.policy, registry.snapshot(), RouteRequest(model="b"),
                            dispatcher.place_request(ref, hints), None)
    assert decision.action == "evict-then-place"
    assert decision.placement.eviction is not None
    planned = decision.placement.eviction.workers
    assert decision.to_dict()["place"]["eviction"]["stop"] == [first.id]
    second = await dispatcher.spawn(ref, hints, Silent())
    assert tuple(hives.stopped) == planned
    assert (second.hive_id, second.device) == ("rig", "cpu")


async def test_abandoned_waiters_give_their_place_back_at_once() -> None:
    """Issue 10.7: three requests whose clients gave up must not keep the queue full."""
    admission = Admission(FakeClock(), max_queue=3, capacity=lambda model: 1)
    held = await admission.enter("m")
    gone = [asyncio.create_task(admission.enter("m")) for _ in range(3)]
    await asyncio.sleep(0)
    assert admission.queued("m") == 3
    for task in gone:
        task.cancel()
    await asyncio.gather(*gone, return_exceptions=True)
    assert admission.queued("m") == 0
    positions: list[int] = []
    def seen(at: int, _length: int) -> None:
        positions.append(at)

    # None refused: the abandoned places are free.
    live = [asyncio.create_task(admission.enter("m", on_position=seen)) for _ in range(3)]
    await asyncio.sleep(0)
    assert admission.queued("m") == 3 and positions == [1, 2, 3]
    held.release()
    first = await live[0]  # the abandoned ones are never admitted: the live one is next
    assert admission.active("m") == 1 and admission.queued("m") == 2
    first.release()
    for task in live[1:]:
        (await task).release()
    assert admission.active("m") == 0


async def test_a_queue_of_abandoned_waiters_is_compacted() -> None:
    admission = Admission(FakeClock(), max_queue=10_000, capacity=lambda model: 1)
    await admission.enter("m")
    for _ in range(5):
        gone = [asyncio.create_task(admission.enter("m")) for _ in range(100)]
        await asyncio.sleep(0)
        for task in gone:
            task.cancel()
        await asyncio.gather(*gone, return_exceptions=True)
    lane = admission._lanes["m"]
    assert admission.queued("m") == 0 and lane.held <= 64 + 100


class LiveHives(FakeHives):
    """Workers are ready at once; tracks what really runs (spawned, not yet stopped)."""

    def __init__(self, registry: Registry, sizes: dict[str, int]) -> None:
        super().__init__(registry)
        self.sizes = sizes
        self.live: dict[str, int] = {}
        self.peak = 0

    async def spawn(self, hive_id: str, url: str, spec: SpawnWorker) -> WorkerInfo:
        info = await super().spawn(hive_id, url, spec)
        self.live[info.id] = self.sizes[spec.model]
        self.peak = max(self.peak, sum(self.live.values()))
        return ready(info)

    async def stop_worker(self, hive_id: str, url: str, worker_id: str) -> WorkerInfo:
        await asyncio.sleep(random.uniform(0, 0.003))  # the stop's report comes later
        stopped = await super().stop_worker(hive_id, url, worker_id)
        del self.live[worker_id]
        return stopped


@pytest.mark.parametrize("seed", range(12))
async def test_evictions_hold_the_memory_they_free(seed: int) -> None:
    """Issue 10.6: the memory an eviction frees goes to the request that evicted for it, not
    to a concurrent placement; nothing runs over budget; every request is placed."""
    random.seed(seed)
    sizes = {f"m{i}": GB for i in range(10)}
    clock = FakeClock()
    registry = Registry(clock, INTERVAL, memory_budget=int(3.5 * GB))
    for hive in HIVES:
        report(registry, hive)
    hives = LiveHives(registry, sizes)
    dispatcher = Dispatcher(registry, cast(HiveClient, hives), spawn_timeout=5,
                            default_threads=None, estimator=lambda ref: sizes[ref.name])
    pin = Hints(hive_id="rig", device="cpu")
    for i in range(3):  # the budget's worth of idle workers
        await dispatcher.spawn(ModelRef("builtin", f"m{i}", "fake"), pin, Silent())
        clock.advance(1)
    for wave in range(3, 10, 2):  # two new models at a time, each must evict one
        names = [f"m{n}" for n in range(wave, min(wave + 2, 10))]
        placed = await asyncio.gather(*(dispatcher.spawn(ModelRef("builtin", n, "fake"), pin,
                                                         Silent()) for n in names))
        assert [p.model for p in placed] == names
        clock.advance(1)
    assert hives.peak <= 3.5 * GB  # never more running than the budget
    reserved, _ = registry.reservations.totals()
    assert reserved.get("rig/cpu", 0) <= 3.5 * GB
