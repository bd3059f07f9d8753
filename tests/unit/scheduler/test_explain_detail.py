"""A dry run's report lists every candidate with its verdict: each rejected one with its
reason, each eligible one; a request's report keeps the counts only."""

from __future__ import annotations

from rbee.api.cluster import Device, WorkerInfo
from rbee.core.states import WorkerState
from rbee.queen.policy import SchedulingPolicy
from rbee.scheduler.lua import LuaPolicy
from rbee.scheduler.placement import PlaceRequest, place
from rbee.scheduler.report import DETAIL_LIMIT, Report
from rbee.scheduler.routing import RouteRequest, route
from rbee.scheduler.snapshot import ClusterSnapshot, HiveView, WorkerView

GB = 2**30


def dev(did: str, kind: str, free: int) -> Device:
    return Device(id=did, kind=kind, name=did, memory_total=free,  # type: ignore[arg-type]
                  memory_free=free)


def view(wid: str, model: str, hive: str, state: WorkerState = WorkerState.READY
         ) -> WorkerView:
    return WorkerView(WorkerInfo(id=wid, hive_id=hive, model=model, model_path="",
                                 device="cpu", engine="fake", url="http://x", state=state), 0)


def cluster() -> ClusterSnapshot:
    hives = (HiveView("big", "http://a", True, (dev("cuda:0", "cuda", 24 * GB),
                                                dev("cpu", "cpu", 1 * GB))),
             HiveView("gone", "http://b", False, (dev("cpu", "cpu", 64 * GB),)))
    return ClusterSnapshot(hives, (view("w-ok", "m", "big"), view("w-other", "n", "big"),
                                   view("w-load", "m", "big", WorkerState.LOADING),
                                   view("w-down", "m", "gone")))


def verdicts(report: Report) -> dict[str, str | None]:
    return {c["candidate"]: c["reason"] for c in report.to_dict()["candidates"]}


def test_a_dry_run_names_each_rejected_candidate_and_why() -> None:
    picked, report = route(cluster(), RouteRequest("m", explain=True))
    assert picked is not None and picked.info.id == "w-ok"
    assert verdicts(report) == {"w-other": "serves another model", "w-load": "worker loading",
                                "w-down": "hive down", "w-ok": None}
    placed, report = place(cluster(), PlaceRequest("m", need=2 * GB, explain=True))
    assert placed is not None and placed.key == "big/cuda:0"
    assert verdicts(report) == {"big/cpu": "insufficient memory", "gone/cpu": "hive down",
                                "big/cuda:0": None}
    assert report.to_dict()["candidates_omitted"] == 0


def test_a_request_keeps_counts_only() -> None:
    _, report = route(cluster(), RouteRequest("m"))
    assert "candidates" not in report.to_dict() and report.rejections is None
    assert dict(report.rejected) == {"serves another model": 1, "worker loading": 1,
                                     "hive down": 1}


def test_a_prefer_fallback_lists_the_second_pass_only() -> None:
    placed, report = place(cluster(), PlaceRequest("m", need=2 * GB, hive_id="gone",
                                                   mode="prefer", explain=True))
    assert placed is not None and placed.key == "big/cuda:0"
    assert verdicts(report)["gone/cpu"] == "hive down"
    assert len(report.to_dict()["candidates"]) == 3 and report.notes


def test_thousands_of_candidates_are_listed_up_to_the_limit_then_counted() -> None:
    report = Report.of("p", detailed=True)
    for i in range(DETAIL_LIMIT + 7):
        report.reject("hive down", f"h{i}/cpu")
    out = report.to_dict()
    assert len(out["candidates"]) == DETAIL_LIMIT and out["candidates_omitted"] == 7
    assert out["rejected"] == {"hive down": DETAIL_LIMIT + 7}


async def test_a_script_refusal_rejects_every_eligible_candidate_with_its_message() -> None:
    policy = SchedulingPolicy()
    policy.use(LuaPolicy("function place(model, devices) return false end", "t"))
    placed, report = await policy.place(cluster(), PlaceRequest("m", need=2 * GB, mode="auto",
                                                                explain=True))
    assert placed is None and report.refusal is not None
    reasons = verdicts(report)
    assert reasons["gone/cpu"] == "hive down"
    assert reasons["big/cuda:0"] is not None and "refused by the script" in reasons["big/cuda:0"]
    policy.close()
