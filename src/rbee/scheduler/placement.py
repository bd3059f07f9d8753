"""Placement: pick hive + device for a new worker, with memory accounting.

A device fits when the model's estimated memory is at most what `ClusterSnapshot.available`
leaves on it (capacity minus reservations, and reported free memory minus what is reserved
but still loading). Hints are honoured by mode: `pin` places only there (or fails with the
report), `prefer` tries there first, `auto` lets the policy choose. Policies score the
devices that fit; the report keeps every rejection and the best scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rbee.scheduler.report import Report
from rbee.scheduler.snapshot import ClusterSnapshot, DeviceRow, device_key

PlaceMode = Literal["pin", "prefer", "auto"]
PLACE_POLICIES = ("best-device", "bin-pack", "spread", "affinity")
_KIND_RANK = {"cuda": 2, "metal": 1, "cpu": 0}
_MIB = 2**20


@dataclass(frozen=True)
class PlaceRequest:
    model: str
    hive_id: str | None = None
    device: str | None = None  # None or "auto": best available
    need: int = 0  # bytes the model is estimated to take (on a CPU)
    mode: PlaceMode = "pin"  # how `hive_id`/`device` bind (see module docstring)
    policy: str = "best-device"
    gpu_overhead: int = 0  # added on CUDA/Metal devices: the driver's context
    explain: bool = False  # a dry run: the report lists every candidate and its verdict

    def need_on(self, kind: str) -> int:
        return self.need if kind == "cpu" else self.need + self.gpu_overhead


@dataclass(frozen=True)
class Placement:
    hive_id: str
    device: str

    @property
    def key(self) -> str:
        return device_key(self.hive_id, self.device)


# A candidate is the snapshot's own DeviceRow: the filters allocate nothing per device (a
# decision may look at hundreds). `warm` is the set of hives already running the model.
Scorer = Callable[[DeviceRow, int, frozenset[str]], float]


def _best_device(c: DeviceRow, need: int, warm: frozenset[str]) -> float:
    return _KIND_RANK[c.device.kind] * 1e9 + c.available / _MIB


def _bin_pack(c: DeviceRow, need: int, warm: frozenset[str]) -> float:  # fullest that fits
    return _KIND_RANK[c.device.kind] * 1e9 - (c.available - need) / _MIB


def _spread(c: DeviceRow, need: int, warm: frozenset[str]) -> float:  # emptiest, fewest workers
    return _KIND_RANK[c.device.kind] * 1e9 - c.workers * 1e6 + c.available / _MIB


def _affinity(c: DeviceRow, need: int, warm: frozenset[str]) -> float:  # weights already warm
    return (1e12 if c.hive.id in warm else 0.0) + _best_device(c, need, warm)


SCORERS: dict[str, Scorer] = {"best-device": _best_device, "bin-pack": _bin_pack,
                              "spread": _spread, "affinity": _affinity}


def candidates(snapshot: ClusterSnapshot, req: PlaceRequest, report: Report,
               *, hinted: bool) -> list[DeviceRow]:
    """Devices passing every filter; `hinted` applies the hive/device hints as filters."""
    fit: list[DeviceRow] = []
    rows = snapshot.devices
    report.evaluated += len(rows)
    # The filters, inlined: this loop runs over every device of the cluster.
    want_hive = req.hive_id if hinted else None
    want_device = req.device if hinted and req.device not in (None, "auto") else None
    need, gpu_need = req.need, req.need_on("cuda")
    reject = report.reject
    for row in rows:
        hive = row.hive
        if want_hive is not None and hive.id != want_hive:
            reject("on another hive", row.key)
        elif not hive.up:
            reject("hive down", row.key)
        elif want_device is not None and row.device.id != want_device:
            reject("other device requested", row.key)
        elif (need if row.device.kind == "cpu" else gpu_need) > row.available:
            reject("insufficient memory", row.key)
        else:
            fit.append(row)
    if report.detailed:
        report.passed([row.key for row in fit])
    return fit


def place(snapshot: ClusterSnapshot, req: PlaceRequest) -> tuple[Placement | None, Report]:
    report = Report.of(req.policy, detailed=req.explain)
    scorer = SCORERS.get(req.policy, _best_device)
    hinted = req.hive_id is not None or req.device not in (None, "auto")
    if hinted and req.mode == "prefer":
        preferred = candidates(snapshot, req, report, hinted=True)
        if preferred:
            return _pick(preferred, scorer, snapshot, req, report), report
        report.notes.append(f"preferred {req.hive_id or ''} {req.device or ''} has no room "
                            f"({report.explain()}); placing anywhere")
        report.clear_rejections()
    fit = candidates(snapshot, req, report, hinted=hinted and req.mode == "pin")
    if not fit:
        return None, report
    return _pick(fit, scorer, snapshot, req, report), report


def _pick(fit: list[DeviceRow], scorer: Scorer, snapshot: ClusterSnapshot, req: PlaceRequest,
          report: Report) -> Placement:
    warm = frozenset(w.info.hive_id for w in snapshot.workers_of(req.model)) \
        if scorer is _affinity else frozenset()
    scored = [(scorer(c, req.need, warm), c) for c in fit]
    report.scores.extend((c.key, score) for score, c in scored)
    # highest score; ties broken by the smaller key so decisions are reproducible
    _, best = min(scored, key=lambda sc: (-sc[0], sc[1].key))
    return Placement(best.hive.id, best.device.id)
