"""Placement with memory accounting, pin/prefer/auto, built-in policies, eviction plans.

Named cluster fixtures (a fake device probe's view): `gpus` = hive "rig" with 2×24 GB CUDA
and a CPU, hive "mac" with a 32 GB Metal device and a CPU; `full` = the same with cuda:0
reserved to the brim; `down` = the same with "rig" down.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rbee.api.cluster import Device, WorkerInfo
from rbee.core.states import WorkerState
from rbee.scheduler.eviction import Eviction, plan_eviction
from rbee.scheduler.placement import PlaceRequest, place
from rbee.scheduler.snapshot import ClusterSnapshot, HiveView, WorkerView, device_key

GB = 2**30
CUDA0 = Device(id="cuda:0", kind="cuda", name="RTX 4090", memory_total=24 * GB,
               memory_free=24 * GB)
CUDA1 = Device(id="cuda:1", kind="cuda", name="RTX 4090", memory_total=24 * GB,
               memory_free=24 * GB)
METAL = Device(id="metal:0", kind="metal", name="M2 Max", memory_total=32 * GB,
               memory_free=32 * GB)
RIG_CPU = Device(id="cpu", kind="cpu", name="Threadripper", memory_total=128 * GB,
                 memory_free=100 * GB)
MAC_CPU = Device(id="cpu", kind="cpu", name="M2 Max CPU", memory_total=32 * GB,
                 memory_free=8 * GB)


def cluster(*workers: WorkerView, down: tuple[str, ...] = (), reserved: dict[str, int] | None
            = None, pending: dict[str, int] | None = None,
            budget: int | None = None) -> ClusterSnapshot:
    hives = (HiveView("rig", "http://rig", "rig" not in down, (CUDA0, CUDA1, RIG_CPU),
                      region="eu-west", labels={"gpu": "4090"}),
             HiveView("mac", "http://mac", "mac" not in down, (METAL, MAC_CPU),
                      region="us-east"))
    return ClusterSnapshot(hives, tuple(workers), reserved or {}, pending or {}, budget)


def worker(wid: str, hive: str, device: str, model: str = "m", *, reserved: int = 0,
           idle_for: float = 0.0, inflight: int = 0, keep_warm: bool = False,
           state: WorkerState = WorkerState.READY) -> WorkerView:
    info = WorkerInfo(id=wid, hive_id=hive, model=model, model_path="", device=device,
                      engine="fake", url=f"http://{wid}", state=state)
    return WorkerView(info, inflight, reserved, idle_for, keep_warm)


def after_eviction(snapshot: ClusterSnapshot, plan: Eviction) -> ClusterSnapshot:
    """The snapshot as it will be once `plan`'s workers are stopped."""
    gone = set(plan.workers)
    reserved = dict(snapshot.reserved)
    reserved[plan.placement.key] = reserved.get(plan.placement.key, 0) - plan.frees
    return replace(snapshot, workers=tuple(w for w in snapshot.workers
                                           if w.info.id not in gone), reserved=reserved)


FIXTURES = {
    "gpus": cluster(),
    "full": cluster(reserved={"rig/cuda:0": 24 * GB}),
    "down": cluster(down=("rig",)),
}


@pytest.mark.parametrize(("fixture", "req", "expected", "rejections"), [
    # best-device: CUDA over Metal over CPU, then most room
    ("gpus", PlaceRequest("m", need=8 * GB), ("rig", "cuda:0"), {}),
    ("full", PlaceRequest("m", need=8 * GB), ("rig", "cuda:1"), {"insufficient memory": 1}),
    ("down", PlaceRequest("m", need=8 * GB), ("mac", "metal:0"), {"hive down": 3}),
    # too big for any GPU: only the big CPU fits
    ("gpus", PlaceRequest("m", need=40 * GB), ("rig", "cpu"), {"insufficient memory": 4}),
    # pinned: there or nowhere (never moved silently)
    ("full", PlaceRequest("m", device="cuda:0", need=8 * GB), None,
     {"insufficient memory": 1, "other device requested": 4}),
    ("gpus", PlaceRequest("m", hive_id="mac", device="cpu", need=4 * GB), ("mac", "cpu"),
     {"on another hive": 3, "other device requested": 1}),
    # prefer: there if it fits, else the policy's choice
    ("full", PlaceRequest("m", device="cuda:0", need=8 * GB, mode="prefer"),
     ("rig", "cuda:1"), {"insufficient memory": 1}),
    ("gpus", PlaceRequest("m", device="metal:0", need=8 * GB, mode="prefer"),
     ("mac", "metal:0"), {"other device requested": 4}),
    # auto ignores hints
    ("gpus", PlaceRequest("m", device="cpu", need=8 * GB, mode="auto"), ("rig", "cuda:0"), {}),
    ("down", PlaceRequest("m", hive_id="rig", need=GB), None, {"hive down": 3,
                                                               "on another hive": 2}),
])
def test_placement_table(fixture: str, req: PlaceRequest, expected: tuple[str, str] | None,
                         rejections: dict[str, int]) -> None:
    decision, report = place(FIXTURES[fixture], req)
    assert (decision.hive_id, decision.device) == expected if decision else expected is None
    assert dict(report.rejected) == rejections
    assert report.evaluated == 5


def test_a_pinned_failure_explains_itself_and_a_prefer_fallback_says_so() -> None:
    _, report = place(FIXTURES["full"], PlaceRequest("m", device="cuda:0", need=8 * GB))
    assert "insufficient memory" in report.explain()
    _, prefer = place(FIXTURES["full"], PlaceRequest("m", device="cuda:0", need=8 * GB,
                                                     mode="prefer"))
    assert prefer.notes and "preferred" in prefer.notes[0] and "no room" in prefer.notes[0]


def test_available_memory_takes_the_stricter_of_accounting_and_measurement() -> None:
    s = cluster(reserved={"rig/cuda:0": 10 * GB}, pending={"rig/cuda:0": 6 * GB})
    assert s.available("rig", CUDA0) == 14 * GB  # 24 total − 10 reserved
    busy = CUDA0.model_copy(update={"memory_free": 12 * GB})  # another program took memory
    assert s.available("rig", busy) == 6 * GB  # 12 free − 6 still loading
    assert cluster(budget=4 * GB).available("rig", CUDA0) == 4 * GB
    assert cluster(reserved={"rig/cuda:0": 30 * GB}).available("rig", CUDA0) == 0


@pytest.mark.parametrize(("policy", "expected"), [
    ("best-device", "rig/cuda:1"),  # most room among the CUDA devices
    ("bin-pack", "rig/cuda:0"),  # the fullest that still fits
    ("spread", "rig/cuda:1"),  # fewest workers
    ("affinity", "rig/cuda:1"),  # where the model already runs: rig (then most room)
])
def test_built_in_placement_policies(policy: str, expected: str) -> None:
    s = cluster(worker("w0", "rig", "cuda:0", model="m", reserved=16 * GB),
                reserved={"rig/cuda:0": 16 * GB})
    decision, report = place(s, PlaceRequest("m", need=4 * GB, policy=policy))
    assert decision is not None and decision.key == expected
    assert report.policy == policy and report.top()[0][0] == expected


def test_affinity_prefers_a_hive_already_running_the_model_over_a_bigger_device() -> None:
    s = cluster(worker("w0", "mac", "metal:0", model="m", reserved=GB),
                reserved={"mac/metal:0": GB})
    decision, _ = place(s, PlaceRequest("m", need=GB, policy="affinity"))
    assert decision is not None and decision.hive_id == "mac"


def test_eviction_frees_the_least_recently_used_idle_workers_weighed_by_reload_cost() -> None:
    s = cluster(
        worker("old-small", "rig", "cuda:0", "a", reserved=6 * GB, idle_for=600),
        worker("old-big", "rig", "cuda:0", "b", reserved=12 * GB, idle_for=700),
        worker("recent", "rig", "cuda:0", "c", reserved=6 * GB, idle_for=5),
        worker("busy", "rig", "cuda:1", "d", reserved=24 * GB, inflight=1),
        reserved={"rig/cuda:0": 24 * GB, "rig/cuda:1": 24 * GB}, down=("mac",))
    req = PlaceRequest("new", device="cuda:0", need=6 * GB, hive_id="rig")
    assert place(s, req)[0] is None
    plan = plan_eviction(s, req)
    assert plan is not None and plan.placement.key == "rig/cuda:0"
    # 600 s / (1 + 6) beats 700 s / (1 + 12): the small one is cheaper to bring back
    assert plan.workers == ("old-small",) and plan.frees == 6 * GB
    after = after_eviction(s, plan)
    assert place(after, req)[0] is not None


def test_eviction_never_touches_busy_or_kept_warm_workers() -> None:
    s = cluster(worker("warm", "rig", "cuda:0", reserved=24 * GB, idle_for=1e6, keep_warm=True),
                worker("busy", "rig", "cuda:1", reserved=24 * GB, idle_for=1e6, inflight=2),
                reserved={"rig/cuda:0": 24 * GB, "rig/cuda:1": 24 * GB}, down=("mac",))
    assert plan_eviction(s, PlaceRequest("x", hive_id="rig", device="cuda:0",
                                         need=GB)) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40 * GB), min_size=1, max_size=40),
       st.sampled_from(["best-device", "bin-pack", "spread", "affinity"]))
def test_no_sequence_of_placements_over_commits_a_device(needs: list[int], policy: str) -> None:
    """Place, reserve, repeat: no device ever holds more than it has (or than it reports)."""
    s = cluster()
    reserved: dict[str, int] = {}
    for need in needs:
        decision, _ = place(s, PlaceRequest("m", need=need, policy=policy))
        if decision is None:
            continue
        key = device_key(decision.hive_id, decision.device)
        reserved[key] = reserved.get(key, 0) + need
        s = replace(s, reserved=dict(reserved), pending=dict(reserved))
    for hive in s.hives:
        for dev in hive.devices:
            assert reserved.get(device_key(hive.id, dev.id), 0) <= min(dev.memory_total,
                                                                       dev.memory_free)
