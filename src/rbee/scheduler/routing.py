"""Routing: pick a running worker for a request (filters, then least-loaded)."""

from __future__ import annotations

from dataclasses import dataclass

from rbee.core.states import WorkerState
from rbee.scheduler.report import Report
from rbee.scheduler.snapshot import ClusterSnapshot, WorkerView


@dataclass(frozen=True)
class RouteRequest:
    model: str
    hive_id: str | None = None
    device: str | None = None
    worker_id: str | None = None


def _rejection(w: WorkerView, req: RouteRequest, snapshot: ClusterSnapshot) -> str | None:
    info = w.info
    hive = snapshot.hive(info.hive_id)
    checks = (
        (req.worker_id is not None and info.id != req.worker_id, "other worker requested"),
        (info.model != req.model, "serves another model"),
        (req.hive_id is not None and info.hive_id != req.hive_id, "on another hive"),
        (req.device is not None and info.device != req.device, "on another device"),
        (hive is None or not hive.up, "hive down"),
        (info.state is not WorkerState.READY, f"worker {info.state.value}"),
    )
    return next((reason for failed, reason in checks if failed), None)


def route(snapshot: ClusterSnapshot, req: RouteRequest) -> tuple[WorkerView | None, Report]:
    report = Report()
    fit: list[WorkerView] = []
    for w in snapshot.workers:
        report.evaluated += 1
        reason = _rejection(w, req, snapshot)
        if reason:
            report.reject(reason)
        else:
            fit.append(w)
    if not fit:
        return None, report
    # least-loaded; ties broken by id so decisions are reproducible
    return min(fit, key=lambda w: (w.inflight, w.info.load, w.info.id)), report
