"""The frozen view of the cluster that every decision is made over."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rbee.api.cluster import Device, WorkerInfo


@dataclass(frozen=True)
class HiveView:
    id: str
    url: str
    up: bool
    devices: tuple[Device, ...]
    region: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerView:
    info: WorkerInfo
    inflight: int  # requests the queen has in flight on it (fresher than telemetry)
    reserved: int = 0  # bytes the queen accounts for it on its device
    idle_for: float = 0.0  # seconds since its last request ended (or since it became ready)
    keep_warm: bool = False


@dataclass(frozen=True)
class ClusterSnapshot:
    hives: tuple[HiveView, ...]
    workers: tuple[WorkerView, ...]
    # Per "hive/device": bytes reserved for workers there (all live states), and the part of
    # that not yet visible in the device's reported free memory (workers still loading).
    reserved: Mapping[str, int] = field(default_factory=dict)
    pending: Mapping[str, int] = field(default_factory=dict)
    budget: int | None = None  # a cap on every device's usable memory (bytes), if set

    def hive(self, hive_id: str) -> HiveView | None:
        return next((h for h in self.hives if h.id == hive_id), None)

    def available(self, hive_id: str, device: Device) -> int:
        """Memory a new worker may take on this device, net of every reservation.

        Both the accounted view (capacity minus reservations) and the measured one (reported
        free minus what is reserved but not loaded yet) must allow it: the first keeps two
        placements from over-committing, the second respects what other processes use.
        """
        key = device_key(hive_id, device.id)
        capacity = device.memory_total if self.budget is None else min(device.memory_total,
                                                                       self.budget)
        accounted = capacity - self.reserved.get(key, 0)
        measured = device.memory_free - self.pending.get(key, 0)
        return max(0, min(accounted, measured))


def device_key(hive_id: str, device_id: str) -> str:
    return f"{hive_id}/{device_id}"
