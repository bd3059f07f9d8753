"""The frozen view of the cluster that every decision is made over."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import chain
from typing import NamedTuple

from rbee.api.cluster import Device, WorkerInfo


@dataclass(frozen=True)
class HiveView:
    id: str
    url: str
    up: bool
    devices: tuple[Device, ...]
    region: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class WorkerView(NamedTuple):  # one per worker per snapshot: a NamedTuple is cheapest to make
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
    worker_counts: Mapping[str, int] | None = None  # workers per "hive/device", if known
    # What a registry keeps between snapshots, if given: each hive's workers by model (in
    # `hives` order), and a source of the device rows (`devices`). Recomputing either from
    # scratch for every snapshot set the tail of a decision on a live registry.
    models: tuple[Mapping[str, tuple[WorkerView, ...]], ...] | None = None
    device_rows: Callable[[], tuple[DeviceRow, ...]] | None = None

    def within(self, regions: frozenset[str]) -> ClusterSnapshot:
        """The cluster as a tenant bound to `regions` may see it: hives of other regions
        (and of none) and their workers and devices are not in it, so no policy, built-in or
        scripted, can route or place there."""
        keep = [i for i, h in enumerate(self.hives) if h.region in regions]
        hives = tuple([self.hives[i] for i in keep])
        ids = {h.id for h in hives}
        rows = self.device_rows
        return replace(
            self, hives=hives, workers=tuple([w for w in self.workers if w.info.hive_id in ids]),
            models=None if self.models is None else tuple([self.models[i] for i in keep]),
            device_rows=None if rows is None else (
                lambda: tuple([r for r in rows() if r.hive.id in ids])))

    # Indexes, built once per snapshot on first use: a decision then costs what its
    # candidates cost, not a pass over every worker of the cluster.

    @cached_property
    def hives_by_id(self) -> dict[str, HiveView]:
        return {h.id: h for h in self.hives}

    @cached_property
    def _of_model(self) -> dict[str, tuple[WorkerView, ...]]:
        return {}

    def workers_of(self, model: str) -> tuple[WorkerView, ...]:
        """The workers serving `model`, found on first ask: a request asks about one model,
        and a full index by model cost more than the routing decision it served."""
        found = self._of_model.get(model)
        if found is None:
            if self.models is not None:
                found = tuple(chain.from_iterable([m[model] for m in self.models
                                                   if model in m]))
            else:
                found = tuple([w for w in self.workers if w.info.model == model])
            self._of_model[model] = found
        return found

    @cached_property
    def device_workers(self) -> Mapping[str, int]:
        if self.worker_counts is not None:  # the registry keeps them per hive
            return self.worker_counts
        # counted by (hive, device) pairs first: one key string per device, not per worker
        pairs = Counter([(w.info.hive_id, w.info.device) for w in self.workers])
        return {device_key(h, d): n for (h, d), n in pairs.items()}

    @cached_property
    def devices(self) -> tuple[DeviceRow, ...]:
        """Every device with its key, memory available and workers (request-independent)."""
        if self.device_rows is not None:
            return self.device_rows()
        counts = self.device_workers
        return tuple(chain.from_iterable(
            hive_device_rows(h, counts, self.reserved, self.pending, self.budget)
            for h in self.hives))

    def hive(self, hive_id: str) -> HiveView | None:
        return self.hives_by_id.get(hive_id)

    def available(self, hive_id: str, device: Device) -> int:
        """Memory a new worker may take on this device, net of every reservation.

        Both the accounted view (capacity minus reservations) and the measured one (reported
        free minus what is reserved but not loaded yet) must allow it: the first keeps two
        placements from over-committing, the second respects what other processes use.
        """
        return self.available_at(device_key(hive_id, device.id), device)

    def available_at(self, key: str, device: Device) -> int:
        return available_at(key, device, self.reserved, self.pending, self.budget)


def available_at(key: str, device: Device, reserved: Mapping[str, int],
                 pending: Mapping[str, int], budget: int | None) -> int:
    """`ClusterSnapshot.available`, for one device under its key."""
    # plain comparisons, not min/max: this runs for every device of every new snapshot
    total = device.memory_total
    accounted = (total if budget is None or budget > total else budget) - reserved.get(key, 0)
    measured = device.memory_free - pending.get(key, 0)
    available = accounted if accounted < measured else measured
    return available if available > 0 else 0


def hive_device_rows(hive: HiveView, counts: Mapping[str, int], reserved: Mapping[str, int],
                     pending: Mapping[str, int], budget: int | None
                     ) -> tuple[DeviceRow, ...]:
    """One hive's devices as placement reads them (see `ClusterSnapshot.devices`)."""
    rows = []
    for d in hive.devices:
        key = device_key(hive.id, d.id)
        rows.append(DeviceRow(hive, d, key, available_at(key, d, reserved, pending, budget),
                              counts.get(key, 0)))
    return tuple(rows)


class DeviceRow(NamedTuple):  # hundreds per snapshot: a NamedTuple is the cheapest to make
    hive: HiveView
    device: Device
    key: str
    available: int
    workers: int


def device_key(hive_id: str, device_id: str) -> str:
    return f"{hive_id}/{device_id}"
