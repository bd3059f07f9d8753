from __future__ import annotations

import pytest

from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.errors import HiveNotFound
from rbee.core.states import WorkerState
from rbee.queen.registry import Registry

CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=1, memory_free=1)


def telemetry(*workers: WorkerInfo) -> HiveTelemetry:
    return HiveTelemetry(hive_id="h", url="http://h", version="0", pid=1, devices=[CPU],
                         workers=list(workers))


def w(wid: str) -> WorkerInfo:
    return WorkerInfo(id=wid, hive_id="h", model="m", model_path="", device="cpu", engine="fake",
                      url="http://w", state=WorkerState.READY)


def test_hive_goes_down_after_three_missed_intervals() -> None:
    clock = FakeClock()
    reg = Registry(clock, telemetry_interval=2.0)
    reg.report(telemetry(w("a")))
    clock.advance(6.0)
    assert reg.is_up("h")
    clock.advance(0.1)
    assert not reg.is_up("h") and not reg.snapshot().hives[0].up
    reg.report(telemetry())
    assert reg.is_up("h") and reg.workers() == []


def test_inflight_counts_feed_the_snapshot() -> None:
    reg = Registry(FakeClock(), 1.0)
    reg.report(telemetry(w("a")))
    reg.acquire("a")
    reg.acquire("a")
    reg.release("a")
    assert reg.snapshot().workers[0].inflight == 1
    reg.release("a")
    reg.release("a")
    assert reg.snapshot().workers[0].inflight == 0


def test_unknown_hive() -> None:
    with pytest.raises(HiveNotFound):
        Registry(FakeClock(), 1.0).hive_url("nope")


def routing(reg: Registry) -> dict[str, tuple[str, int]]:
    """The routing snapshot's workers: id → (state, in flight)."""
    return {v.info.id: (v.info.state.value, v.inflight)
            for v in reg.snapshot(memory=False).workers}


def test_routing_snapshots_reuse_views_but_see_every_change() -> None:
    clock = FakeClock()
    reg = Registry(clock, telemetry_interval=1.0)
    reg.report(telemetry(w("a"), w("b")))
    first = reg.snapshot(memory=False)
    again = reg.snapshot(memory=False)
    assert again.workers == first.workers and again.workers[0] is first.workers[0]
    assert again.hives[0] is first.hives[0]  # nothing changed: nothing rebuilt

    reg.acquire("a")
    assert routing(reg) == {"a": ("ready", 1), "b": ("ready", 0)}
    reg.release("a")
    assert routing(reg) == {"a": ("ready", 0), "b": ("ready", 0)}
    reg.upsert_worker(w("c").model_copy(update={"state": WorkerState.LOADING}))
    assert routing(reg) == {"a": ("ready", 0), "b": ("ready", 0), "c": ("loading", 0)}
    reg.drop_worker("h", "b")
    assert routing(reg) == {"a": ("ready", 0), "c": ("loading", 0)}
    reg.report(telemetry(w("c")))  # a is gone, c is ready now
    assert routing(reg) == {"c": ("ready", 0)}
    reg.acquire("a")  # a worker the registry no longer knows: no effect on the views
    assert routing(reg) == {"c": ("ready", 0)}


def test_cached_hive_views_follow_up_down_and_devices() -> None:
    clock = FakeClock()
    reg = Registry(clock, telemetry_interval=1.0)
    reg.report(telemetry(w("a")))
    assert reg.snapshot(memory=False).hives[0].up
    reg.suspect("h")
    assert not reg.snapshot(memory=False).hives[0].up
    reg.report(telemetry(w("a")))
    assert reg.snapshot(memory=False).hives[0].up
    clock.advance(3.1)
    assert not reg.snapshot(memory=False).hives[0].up
    reg.report(telemetry(w("a")))
    gpu = Device(id="cuda:0", kind="cuda", name="gpu", memory_total=8, memory_free=8)
    reg.set_devices("h", [CPU, gpu])
    assert [d.id for d in reg.snapshot(memory=False).hives[0].devices] == ["cpu", "cuda:0"]
    reg.forget("h")
    assert reg.snapshot(memory=False).hives == () and routing(reg) == {}


def test_placement_snapshots_without_eviction_facts_count_the_same_workers() -> None:
    reg = Registry(FakeClock(), telemetry_interval=1.0)
    gpu_worker = w("g").model_copy(update={"device": "cuda:0"})
    reg.report(telemetry(w("a"), w("b"), gpu_worker))
    reg.reservations.reserve("a", "h", "cpu", "m", 100)
    reg.acquire("a")
    full, light = reg.snapshot(), reg.snapshot(eviction=False)
    assert dict(light.device_workers) == dict(full.device_workers) == {"h/cpu": 2,
                                                                       "h/cuda:0": 1}
    assert light.reserved == full.reserved == {"h/cpu": 100}
    assert [(v.info.id, v.inflight) for v in light.workers] == \
        [(v.info.id, v.inflight) for v in full.workers]
    # only the full one carries what eviction reads
    assert [v.reserved for v in full.workers] == [100, 0, 0]
    assert [v.reserved for v in light.workers] == [0, 0, 0]
    reg.drop_worker("h", "b")
    assert dict(reg.snapshot(eviction=False).device_workers) == {"h/cpu": 1, "h/cuda:0": 1}


def test_workers_of_a_down_hive_are_listed_unknown_not_ready() -> None:
    clock = FakeClock()
    reg = Registry(clock, telemetry_interval=1.0)
    reg.report(telemetry(w("a")))
    assert [x.state for x in reg.listed_workers()] == [WorkerState.READY]
    clock.advance(3.1)  # three intervals missed: the hive is down
    listed = reg.listed_workers()
    assert [(x.id, x.state) for x in listed] == [("a", WorkerState.UNKNOWN)]
    assert listed[0].stage == "hive h is down; last reported ready"
    # Decisions still see the last report (the watchdog re-places what the hive served).
    assert reg.workers()[0].state is WorkerState.READY and reg.ready_count("m") == 0
    reg.report(telemetry(w("a")))
    assert [x.state for x in reg.listed_workers()] == [WorkerState.READY]
    reg.suspect("h")  # a dead local hive is marked down at once, without waiting
    assert [x.state for x in reg.listed_workers()] == [WorkerState.UNKNOWN]
    assert reg.hives_up() == []


@pytest.mark.parametrize("seed", range(5))
def test_what_snapshots_reuse_between_requests_matches_a_fresh_computation(seed: int) -> None:
    """Issue 10.15: hives keep their workers by model and their placement device rows between
    snapshots. Whatever happened in between (reports, reservations, requests, new workers, a
    hive going down), they must equal what a snapshot computes from scratch."""
    import random

    rnd = random.Random(seed)
    clock = FakeClock()
    reg = Registry(clock, telemetry_interval=2.0, memory_budget=rnd.choice([None, 40]))
    hives = [f"h{i}" for i in range(4)]
    models = ["a", "b", "c"]
    known: dict[str, WorkerInfo] = {}

    def worker(hive: str) -> WorkerInfo:
        wid = f"w{len(known)}"
        known[wid] = WorkerInfo(id=wid, hive_id=hive, model=rnd.choice(models), model_path="",
                                device=rnd.choice(["cpu", "cuda:0"]), engine="fake",
                                url="http://w", state=WorkerState.READY)
        return known[wid]

    def report(hive: str) -> None:
        devices = [Device(id="cpu", kind="cpu", name="c", memory_total=64,
                          memory_free=rnd.randint(0, 64)),
                   Device(id="cuda:0", kind="cuda", name="g", memory_total=24,
                          memory_free=rnd.randint(0, 24))]
        mine = [w for w in known.values() if w.hive_id == hive and rnd.random() < 0.9]
        reg.report(HiveTelemetry(hive_id=hive, url=f"http://{hive}", version="0", pid=1,
                                 devices=devices, workers=mine))

    def reserve() -> None:
        wid = rnd.choice(list(known))
        reg.reservations.reserve(wid, known[wid].hive_id, known[wid].device, known[wid].model,
                                 rnd.randint(1, 8))

    def request() -> None:
        wid = rnd.choice(list(known))
        reg.acquire(wid)
        if rnd.random() < 0.7:
            reg.release(wid)

    steps = [lambda: report(rnd.choice(hives)),
             lambda: reg.upsert_worker(worker(rnd.choice(hives))),
             reserve, lambda: reg.reservations.release(rnd.choice(list(known))), request,
             lambda: clock.advance(rnd.choice([0.5, 3.0])), lambda: None]
    for hive in hives:
        report(hive)
    reg.upsert_worker(worker(hives[0]))
    for _ in range(300):
        rnd.choice(steps)()
        assert_like_fresh(reg, models)


def assert_like_fresh(reg: Registry, models: list[str]) -> None:
    from rbee.scheduler.snapshot import ClusterSnapshot

    for kwargs in ({"memory": False}, {"eviction": False}, {}):
        snap = reg.snapshot(**kwargs)
        fresh = ClusterSnapshot(snap.hives, snap.workers, snap.reserved, snap.pending,
                                snap.budget)
        for model in models:
            assert snap.workers_of(model) == fresh.workers_of(model)
        if kwargs.get("memory", True):
            assert snap.devices == fresh.devices


def test_a_worker_gone_from_its_hives_report_leaves_nothing_behind() -> None:
    """A queen up for months sees thousands of workers come and go: what it kept about each
    (idle time, stream rate, keep-warm, liveness marks) goes with it."""
    reg = Registry(FakeClock(), 1.0)
    for n in range(100):
        wid = f"w{n}"
        reg.report(telemetry(w(wid)))
        reg.acquire(wid)
        reg.keep_warm(wid)
        reg.set_unresponsive(wid)
        reg.observed_rate(wid, 30.0)
        reg.release(wid)
        reg.report(telemetry())  # it crashed, or was stopped behind our back
        reg.release(wid)  # a late stream end changes nothing
    assert reg.workers() == [] and not reg.unresponsive()
    assert not reg.is_kept_warm("w0")
    kept = (reg._idle_since, reg._rates, reg._keep_warm, reg._hive_of, reg._inflight)
    assert [len(m) for m in kept] == [0, 0, 0, 0, 0]


def test_a_report_older_than_a_spawn_keeps_the_new_workers_keep_warm() -> None:
    """The dispatcher records a worker (STARTING) and its keep-warm mark as the hive answers
    the spawn; a telemetry report sent just before that must not take the mark away."""
    reg = Registry(FakeClock(), 1.0)
    reg.report(telemetry())
    starting = w("new").model_copy(update={"state": WorkerState.STARTING})
    reg.upsert_worker(starting)
    reg.keep_warm("new")
    reg.report(telemetry())  # sent before the spawn
    reg.report(telemetry(starting))
    assert reg.is_kept_warm("new")
