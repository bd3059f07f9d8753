"""Memory the queen has promised to workers, per device: no two placements over-commit.

A placement reserves its model's estimate on the chosen device in the same synchronous step
as the decision (no await between them, so concurrent placements see each other). The
reservation lives as long as the worker: telemetry confirms it, a stop, crash or
disappearance releases it. Once a worker is ready and reports what it really uses, its
reservation becomes that figure plus a margin, and the model's next placement uses it too
("the estimate is corrected from what workers actually use").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rbee.api.cluster import WorkerInfo
from rbee.core.clock import Clock
from rbee.core.states import WorkerState
from rbee.scheduler.snapshot import device_key

MARGIN = 0.10  # on top of measured use: allocator growth, KV cache filling up with longer prompts
_LIVE = (WorkerState.STARTING, WorkerState.LOADING, WorkerState.READY)


@dataclass
class Reservation:
    worker_id: str
    hive_id: str
    device: str
    model: str
    bytes: int
    created: float
    confirmed: bool = False  # seen in the hive's telemetry (or its spawn answer)
    loaded: bool = False  # ready: its memory shows in the device's reported free memory

    @property
    def key(self) -> str:
        return device_key(self.hive_id, self.device)


class Reservations:
    def __init__(self, clock: Clock, unconfirmed_ttl: float) -> None:
        self._clock = clock
        self._ttl = unconfirmed_ttl  # a spawn that never answered: give the memory back
        self._by_worker: dict[str, Reservation] = {}
        self._learned: dict[str, int] = {}  # model → measured bytes (+ margin)
        # totals() as last computed; None once any reservation's bytes or loaded flag changed
        self._totals: tuple[dict[str, int], dict[str, int]] | None = None

    def reserve(self, worker_id: str, hive_id: str, device: str, model: str, size: int) -> None:
        self._by_worker[worker_id] = Reservation(worker_id, hive_id, device, model, size,
                                                 self._clock.monotonic())
        self._totals = None

    def release(self, worker_id: str) -> None:
        if self._by_worker.pop(worker_id, None) is not None:
            self._totals = None

    def get(self, worker_id: str) -> Reservation | None:
        return self._by_worker.get(worker_id)

    def learned(self, model: str) -> int | None:
        return self._learned.get(model)

    def observe(self, info: WorkerInfo, *, confirm: bool = False) -> None:
        """One worker's latest facts: from telemetry (`confirm`), or a hive's direct answer
        (which a telemetry report generated just before it may not include yet)."""
        r = self._by_worker.get(info.id)
        if r is None:
            if info.state in _LIVE and info.memory_bytes and info.device == "cpu":
                # A worker we did not place (preloaded, or found after a queen restart).
                self._by_worker[info.id] = Reservation(
                    info.id, info.hive_id, info.device, info.model,
                    int(info.memory_bytes * (1 + MARGIN)), self._clock.monotonic(), True,
                    info.state is WorkerState.READY)
                self._totals = None
            return
        if info.state not in _LIVE:
            self.release(info.id)
            return
        r.confirmed = r.confirmed or confirm
        if info.state is WorkerState.READY:
            before = (r.bytes, r.loaded)
            r.loaded = True
            # memory_bytes is the process's RSS: the right measure on a CPU, not of VRAM
            # (no per-process GPU figure yet), so GPU reservations keep their estimate.
            if info.memory_bytes and info.device == "cpu":
                r.bytes = int(info.memory_bytes * (1 + MARGIN))
                self._learned[r.model] = r.bytes
            if (r.bytes, r.loaded) != before:
                self._totals = None

    def sync_hive(self, hive_id: str, workers: Iterable[WorkerInfo]) -> None:
        """A full telemetry report: confirm, correct, and release what is gone."""
        seen = set()
        for info in workers:
            seen.add(info.id)
            self.observe(info, confirm=True)
        now = self._clock.monotonic()
        for r in list(self._by_worker.values()):
            if r.hive_id != hive_id or r.worker_id in seen:
                continue
            if r.confirmed or now - r.created > self._ttl:
                self.release(r.worker_id)

    def forget_hive(self, hive_id: str) -> None:
        for r in [r for r in self._by_worker.values() if r.hive_id == hive_id]:
            self.release(r.worker_id)

    def totals(self) -> tuple[dict[str, int], dict[str, int]]:
        """(reserved per device key, the part not yet loaded) for the snapshot. Computed once
        per change: snapshots share the result, and none of them changes it."""
        if self._totals is not None:
            return self._totals
        reserved: dict[str, int] = {}
        pending: dict[str, int] = {}
        for r in self._by_worker.values():
            reserved[r.key] = reserved.get(r.key, 0) + r.bytes
            if not r.loaded:
                pending[r.key] = pending.get(r.key, 0) + r.bytes
        self._totals = (reserved, pending)
        return self._totals
