"""Routing: pick a running worker for a request (filters, then the policy's choice)."""

from __future__ import annotations

from dataclasses import dataclass

from rbee.core.states import WorkerState
from rbee.scheduler.report import Report
from rbee.scheduler.snapshot import ClusterSnapshot, WorkerView

ROUTE_POLICIES = ("least-loaded", "round-robin")


@dataclass(frozen=True)
class RouteRequest:
    model: str
    hive_id: str | None = None
    device: str | None = None
    worker_id: str | None = None
    policy: str = "least-loaded"
    turn: int = 0  # round-robin: the caller's counter
    after: str | None = None  # least-loaded: the worker picked last, for ties
    explain: bool = False  # a dry run: the report lists every candidate and its verdict


def candidates(snapshot: ClusterSnapshot, req: RouteRequest, report: Report
               ) -> list[WorkerView]:
    hives = snapshot.hives_by_id
    mine = snapshot.workers_of(req.model)
    report.evaluated += len(snapshot.workers)
    _reject_other_models(snapshot, req, report, len(snapshot.workers) - len(mine))
    fit: list[WorkerView] = []
    reject = report.reject
    for w in mine:
        info = w.info
        hive = hives.get(info.hive_id)
        if req.worker_id is not None and info.id != req.worker_id:
            reject("other worker requested", info.id)
        elif req.hive_id is not None and info.hive_id != req.hive_id:
            reject("on another hive", info.id)
        elif req.device is not None and info.device != req.device:
            reject("on another device", info.id)
        elif hive is None or not hive.up:
            reject("hive down", info.id)
        elif info.state is not WorkerState.READY:
            reject(f"worker {info.state.value}", info.id)
        else:
            fit.append(w)
    if report.detailed:
        report.passed([w.info.id for w in fit])
    return fit


def _reject_other_models(snapshot: ClusterSnapshot, req: RouteRequest, report: Report,
                         others: int) -> None:
    """A dry run names the workers of other models; a request only counts them."""
    if not report.detailed:
        if others:
            report.rejected["serves another model"] += others
        return
    for w in snapshot.workers:
        if w.info.model != req.model:
            report.reject("serves another model", w.info.id)


def relative_load(w: WorkerView) -> tuple[float, float]:
    """(the queen's requests in flight, the worker's own count) per slot it serves. Equal
    ratios of small integers divide to the same float, so ties stay exact."""
    slots = w.info.slots
    return w.inflight / slots, w.info.load / slots


def route(snapshot: ClusterSnapshot, req: RouteRequest) -> tuple[WorkerView | None, Report]:
    report = Report.of(req.policy, detailed=req.explain)
    fit = candidates(snapshot, req, report)
    if not fit:
        return None, report
    if req.policy == "round-robin":
        ordered = sorted(fit, key=lambda w: w.info.id)
        return ordered[req.turn % len(ordered)], report
    # least-loaded, relative to what each worker serves at once: a 4-slot worker running 2
    # is less loaded than a 1-slot worker running 1. Equally loaded workers take turns: the
    # first by id after the one picked last (`after`). Always taking the first sent every
    # sequential request to one worker.
    loads = [relative_load(w) for w in fit]
    for w, load in zip(fit, loads, strict=True):
        report.score(w.info.id, -(load[0] + load[1]))
    best = min(loads)
    first = following = None  # one pass, no sort: a model may have hundreds of idle workers
    for w, load in zip(fit, loads, strict=True):
        if load != best:
            continue
        wid = w.info.id
        if first is None or wid < first.info.id:
            first = w
        if req.after is not None and wid > req.after and (
                following is None or wid < following.info.id):
            following = w
    return following or first, report
