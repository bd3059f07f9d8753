"""Least-loaded routing compares load per slot: what a worker runs against what it serves."""

from __future__ import annotations

from rbee.api.cluster import Device, WorkerInfo
from rbee.core.states import WorkerState
from rbee.scheduler.routing import RouteRequest, route
from rbee.scheduler.snapshot import ClusterSnapshot, HiveView, WorkerView

CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=2**36, memory_free=2**35)


def worker(wid: str, slots: int, inflight: int, load: int = 0) -> WorkerView:
    info = WorkerInfo(id=wid, hive_id="a", model="m", model_path="", device="cpu",
                      engine="fake", url=f"http://{wid}", state=WorkerState.READY, slots=slots,
                      load=load)
    return WorkerView(info, inflight)


def pick(*workers: WorkerView, after: str | None = None) -> str:
    snapshot = ClusterSnapshot((HiveView("a", "http://a", True, (CPU,)),), workers)
    chosen, _ = route(snapshot, RouteRequest("m", after=after))
    assert chosen is not None
    return chosen.info.id


def test_a_batching_worker_half_full_is_less_loaded_than_a_busy_single_slot_one() -> None:
    assert pick(worker("a-single", 1, inflight=1), worker("b-batch", 4, inflight=2)) == "b-batch"
    # ... but a full batching worker is as loaded as a full single-slot one: they take turns.
    full = (worker("a-single", 1, inflight=1), worker("b-batch", 4, inflight=4))
    assert pick(*full) == "a-single" and pick(*full, after="a-single") == "b-batch"


def test_an_idle_4_slot_worker_takes_4_before_a_busy_1_slot_one_is_as_loaded() -> None:
    picks = []
    inflight = {"one": 1, "four": 0}
    for _ in range(4):
        chosen = pick(worker("one", 1, inflight["one"]), worker("four", 4, inflight["four"]))
        picks.append(chosen)
        inflight[chosen] += 1
    assert picks == ["four", "four", "four", "four"]  # 0/4 .. 3/4 are all below 1/1


def test_the_workers_own_count_breaks_ties_per_slot_too() -> None:
    assert pick(worker("a", 2, inflight=1, load=2), worker("b", 4, inflight=2, load=2)) == "b"
