from __future__ import annotations

import pytest

from rbee.api.cluster import Device, WorkerInfo
from rbee.core.states import WorkerState
from rbee.scheduler.placement import PlaceRequest, place
from rbee.scheduler.routing import RouteRequest, route
from rbee.scheduler.snapshot import ClusterSnapshot, HiveView, WorkerView

GB = 2**30
CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=64 * GB, memory_free=32 * GB)
GPU0 = Device(id="cuda:0", kind="cuda", name="RTX 4090", memory_total=24 * GB,
              memory_free=20 * GB)
GPU1 = Device(id="cuda:1", kind="cuda", name="RTX 4090", memory_total=24 * GB,
              memory_free=22 * GB)
METAL = Device(id="metal:0", kind="metal", name="M2", memory_total=32 * GB, memory_free=30 * GB)


def worker(wid: str, model: str = "m", hive: str = "a", device: str = "cpu",
           state: WorkerState = WorkerState.READY, inflight: int = 0) -> WorkerView:
    info = WorkerInfo(id=wid, hive_id=hive, model=model, model_path="", device=device,
                      engine="fake", url=f"http://{wid}", state=state)
    return WorkerView(info, inflight)


def snap(*workers: WorkerView, down: tuple[str, ...] = ()) -> ClusterSnapshot:
    hives = (HiveView("a", "http://a", "a" not in down, (GPU0, GPU1, CPU)),
             HiveView("b", "http://b", "b" not in down, (METAL, CPU)))
    return ClusterSnapshot(hives, tuple(workers))


def test_routes_to_least_loaded_ready_worker_of_the_model() -> None:
    s = snap(worker("w1", inflight=3), worker("w2", inflight=1), worker("w3", model="other"),
             worker("w4", state=WorkerState.LOADING))
    chosen, report = route(s, RouteRequest("m"))
    assert chosen is not None and chosen.info.id == "w2"
    assert report.evaluated == 4
    assert report.rejected == {"serves another model": 1, "worker loading": 1}


@pytest.mark.parametrize(("req", "expected"), [
    (RouteRequest("m", hive_id="b"), "w2"),
    (RouteRequest("m", device="cuda:0"), "w1"),
    (RouteRequest("m", worker_id="w2"), "w2"),
])
def test_hints_narrow_the_choice(req: RouteRequest, expected: str) -> None:
    s = snap(worker("w1", device="cuda:0"), worker("w2", hive="b", inflight=5))
    chosen, _ = route(s, req)
    assert chosen is not None and chosen.info.id == expected


def test_workers_on_a_down_hive_are_never_chosen() -> None:
    chosen, report = route(snap(worker("w1"), down=("a",)), RouteRequest("m"))
    assert chosen is None and report.rejected == {"hive down": 1}
    assert "hive down" in report.explain()


def test_placement_prefers_the_gpu_with_most_free_memory() -> None:
    decision, _ = place(snap(), PlaceRequest("m"))
    assert decision is not None and (decision.hive_id, decision.device) == ("a", "cuda:1")


def test_pinned_device_and_hive() -> None:
    decision, _ = place(snap(), PlaceRequest("m", device="cuda:0"))
    assert decision is not None and decision.device == "cuda:0"
    decision, _ = place(snap(), PlaceRequest("m", hive_id="b"))
    assert decision is not None and decision.device == "metal:0"
    decision, report = place(snap(), PlaceRequest("m", device="cuda:7"))
    assert decision is None and report.rejected["other device requested"] == 5


def test_no_hive_up_means_no_placement() -> None:
    decision, report = place(snap(down=("a", "b")), PlaceRequest("m"))
    assert decision is None and report.rejected == {"hive down": 5}
    empty, report = place(ClusterSnapshot((), ()), PlaceRequest("m"))
    assert empty is None and report.explain() == "no candidates"
