"""Decide, then do: scheduling decisions as values, computed over a frozen snapshot.

As Nomad plans and then applies, the queen first decides (pure: a snapshot in, a plan out:
route to a worker, place a new one, stop idle workers and then place, or nothing fits, each
with its reasons) and the `Dispatcher` then executes the plan. `explain` returns the very same
objects without executing them, so what it shows is what a request would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rbee.queen.policy import JobFacts, SchedulingPolicy
from rbee.scheduler.eviction import Eviction, plan_eviction
from rbee.scheduler.placement import Placement, PlaceRequest
from rbee.scheduler.report import Report
from rbee.scheduler.routing import RouteRequest
from rbee.scheduler.snapshot import ClusterSnapshot, WorkerView

Action = Literal["route", "place", "evict-then-place", "refused", "no-capacity"]


@dataclass(frozen=True)
class PlacementPlan:
    """Where a new worker goes: `placement`, or first stop `eviction.workers`, or nowhere."""

    request: PlaceRequest
    placement: Placement | None
    report: Report
    eviction: Eviction | None = None

    @property
    def action(self) -> Action:
        if self.placement is not None:
            return "place"
        if self.report.refusal is not None:
            return "refused"
        return "evict-then-place" if self.eviction is not None else "no-capacity"

    def to_dict(self) -> dict[str, Any]:
        where = self.placement or (self.eviction.placement if self.eviction else None)
        eviction = None
        if self.eviction is not None:
            eviction = {"placement": self.eviction.placement.key,
                        "stop": list(self.eviction.workers), "frees_bytes": self.eviction.frees}
        return {"hive_id": where.hive_id if where else None,
                "device": where.device if where else None, "mode": self.request.mode,
                "report": self.report.to_dict(), "eviction": eviction}


async def decide_placement(policy: SchedulingPolicy, snapshot: ClusterSnapshot,
                           req: PlaceRequest, job: JobFacts | None) -> PlacementPlan:
    """The policy's placement; when nothing fits, the cheapest idle workers to stop.

    Awaits only while a script decides (on its own thread); with the built-in policy it runs
    to its end without yielding to the event loop."""
    placement, report = await policy.place(snapshot, req, job)
    if placement is not None or report.refusal is not None:
        return PlacementPlan(req, placement, report)
    return PlacementPlan(req, None, report, plan_eviction(snapshot, req))


@dataclass(frozen=True)
class Decision:
    """What a request for a model would do: use a ready worker, or the placement plan."""

    worker: WorkerView | None
    route_report: Report
    placement: PlacementPlan

    @property
    def action(self) -> Action:
        return "route" if self.worker is not None else self.placement.action

    def to_dict(self) -> dict[str, Any]:
        info = self.worker.info if self.worker is not None else None
        return {
            "model": self.placement.request.model, "need_bytes": self.placement.request.need,
            "route": {"worker": info.id if info else None,
                      "hive_id": info.hive_id if info else None,
                      "report": self.route_report.to_dict()},
            "place": self.placement.to_dict(),
            "decision": self.action,
        }


async def decide(policy: SchedulingPolicy, snapshot: ClusterSnapshot, route: RouteRequest,
                 place: PlaceRequest, job: JobFacts | None) -> Decision:
    """Both halves, for explain: the route, and where a new worker would go regardless."""
    worker, report = await policy.route(snapshot, route, job, remember=False)
    return Decision(worker, report, await decide_placement(policy, snapshot, place, job))
