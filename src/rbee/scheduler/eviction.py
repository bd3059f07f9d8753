"""Which idle workers to stop so that a new model fits (least recently used, weighed).

Only ready, idle (nothing in flight), not keep-warm workers are candidates. On each device
that passes the placement filters, workers are taken in order of `idle_for / reload cost`
(long idle and cheap to load again go first; reload cost grows with the memory the worker
holds) until the device would have room. The device needing the cheapest set wins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rbee.core.states import WorkerState
from rbee.scheduler.placement import Placement, PlaceRequest, candidates
from rbee.scheduler.report import Report
from rbee.scheduler.snapshot import ClusterSnapshot, WorkerView, device_key

_GIB = 2**30


@dataclass(frozen=True)
class Eviction:
    placement: Placement
    workers: tuple[str, ...]  # ids to stop, in order
    frees: int  # bytes their reservations release


def evictable(w: WorkerView) -> bool:
    return w.info.state is WorkerState.READY and w.inflight == 0 and not w.keep_warm


def _priority(w: WorkerView) -> float:
    return w.idle_for / (1.0 + w.reserved / _GIB)


def plan_eviction(snapshot: ClusterSnapshot, req: PlaceRequest) -> Eviction | None:
    """The cheapest set of idle workers whose stopping lets `req` be placed, or None."""
    loose = replace(req, need=0)  # every device that would fit if memory were free
    hinted = (req.hive_id is not None or req.device not in (None, "auto")) and req.mode == "pin"
    best: tuple[float, Eviction] | None = None
    for c in candidates(snapshot, loose, Report(), hinted=hinted):
        shortfall = req.need_on(c.device.kind) - c.available
        on_device = sorted((w for w in snapshot.workers if evictable(w)
                            and device_key(w.info.hive_id, w.info.device) == c.key),
                           key=_priority, reverse=True)
        chosen: list[WorkerView] = []
        freed = 0
        for w in on_device:
            if freed >= shortfall:
                break
            chosen.append(w)
            freed += w.reserved
        if freed < shortfall or not chosen:
            continue
        cost = sum(1.0 + w.reserved / _GIB for w in chosen)  # reloads we may cause later
        plan = Eviction(Placement(c.hive.id, c.device.id),
                        tuple(w.info.id for w in chosen), freed)
        if best is None or cost < best[0]:
            best = (cost, plan)
    return best[1] if best else None
