"""The frozen view of the cluster that every decision is made over."""

from __future__ import annotations

from dataclasses import dataclass

from rbee.api.cluster import Device, WorkerInfo


@dataclass(frozen=True)
class HiveView:
    id: str
    url: str
    up: bool
    devices: tuple[Device, ...]


@dataclass(frozen=True)
class WorkerView:
    info: WorkerInfo
    inflight: int  # requests the queen has in flight on it (fresher than telemetry)


@dataclass(frozen=True)
class ClusterSnapshot:
    hives: tuple[HiveView, ...]
    workers: tuple[WorkerView, ...]

    def hive(self, hive_id: str) -> HiveView | None:
        return next((h for h in self.hives if h.id == hive_id), None)
