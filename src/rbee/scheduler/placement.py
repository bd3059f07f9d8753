"""Placement: pick hive + device for a new worker."""

from __future__ import annotations

from dataclasses import dataclass

from rbee.api.cluster import Device
from rbee.scheduler.report import Report
from rbee.scheduler.snapshot import ClusterSnapshot

_KIND_PREFERENCE = {"cuda": 0, "metal": 1, "cpu": 2}


@dataclass(frozen=True)
class PlaceRequest:
    model: str
    hive_id: str | None = None
    device: str | None = None  # None or "auto": best available


@dataclass(frozen=True)
class Placement:
    hive_id: str
    device: str


def place(snapshot: ClusterSnapshot, req: PlaceRequest) -> tuple[Placement | None, Report]:
    report = Report()
    best: tuple[tuple[int, int], Placement] | None = None
    for hive in snapshot.hives:
        for dev in hive.devices:
            report.evaluated += 1
            reason = _rejection(hive.id, hive.up, dev, req)
            if reason:
                report.reject(reason)
                continue
            key = (_KIND_PREFERENCE[dev.kind], -dev.memory_free)
            if best is None or key < best[0]:
                best = (key, Placement(hive.id, dev.id))
    return (best[1] if best else None), report


def _rejection(hive_id: str, up: bool, dev: Device, req: PlaceRequest) -> str | None:
    if req.hive_id is not None and hive_id != req.hive_id:
        return "on another hive"
    if not up:
        return "hive down"
    if req.device not in (None, "auto") and dev.id != req.device:
        return "other device requested"
    return None
