"""The JSON the dashboard's live events carry: every hive, its devices and workers.

Built from what the queen already knows (hive telemetry in the Registry, reservations,
hives.conf entries, running jobs); nothing here asks a hive anything. Device fields a
newer hive reports (GPU `utilization`, `temperature`, `power`…) pass through unchanged,
so the page shows them as soon as they exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rbee.api.cluster import WorkerInfo
from rbee.core.states import WorkerState
from rbee.queen.identity import Principal
from rbee.queen.registry import Registry
from rbee.queen.watchdog import IdleTTL
from rbee.remote.hives_conf import HiveEntry
from rbee.scheduler.snapshot import device_key

# Operations that change a hive's state: while one runs, the page says so.
_HIVE_OPS = {"hive_install": "installing", "hive_uninstall": "uninstalling",
             "hive_start": "starting", "hive_stop": "stopping"}


@dataclass(frozen=True)
class RunningJob:
    id: str
    operation: str
    subject: str | None
    tenant_id: str | None


def cluster_view(registry: Registry, entries: Mapping[str, HiveEntry], ttl: IdleTTL,
                 running: Iterable[RunningJob], principal: Principal) -> dict[str, Any]:
    """The cluster as `principal` may see it (jobs: their tenant's, or all for operators)."""
    jobs = [j for j in running if principal.owns(j.tenant_id)]
    busy = {j.subject: _HIVE_OPS[j.operation] for j in jobs
            if j.operation in _HIVE_OPS and j.subject}
    reserved, _ = registry.reservations.totals()
    workers_by_hive: dict[str, list[WorkerInfo]] = {}
    for w in registry.listed_workers():
        workers_by_hive.setdefault(w.hive_id, []).append(w)
    hives = [_hive(registry, name, entries.get(name), busy.get(name), reserved, ttl,
                   workers_by_hive.get(name, []), principal.can("operator"))
             for name in sorted(set(entries) | set(registry.hive_ids()))]
    return {"hives": hives,
            "jobs": [{"id": j.id, "operation": j.operation, "subject": j.subject}
                     for j in jobs]}


def _hive(registry: Registry, name: str, entry: HiveEntry | None, busy: str | None,
          reserved: Mapping[str, int], ttl: IdleTTL, workers: list[WorkerInfo],
          operator: bool) -> dict[str, Any]:
    t = registry.telemetry(name)
    state = registry.state(name)  # up / down / absent (configured, never registered)
    seen = registry.seen_ago(name)
    on_device: dict[str, list[dict[str, Any]]] = {}
    for w in sorted(workers, key=lambda w: w.id):
        on_device.setdefault(w.device, []).append(_worker(registry, w, ttl, operator))
    devices = []
    for d in t.devices if t else []:
        row = d.model_dump()
        row["reserved"] = reserved.get(device_key(name, d.id), 0)
        row["workers"] = on_device.pop(d.id, [])
        devices.append(row)
    # Workers on a device the hive no longer lists still show (with the device's id only).
    devices.extend({"id": dev, "kind": None, "name": dev, "memory_total": 0, "memory_free": 0,
                    "reserved": 0, "workers": ws} for dev, ws in sorted(on_device.items()))
    return {
        "id": name, "state": busy or state,
        "region": (t.region if t else None) or (entry.region if entry else None),
        "labels": (t.labels if t and t.labels else entry.labels if entry else {}),
        # hives.conf's SSH host is an operator's to see (as /v1/hives is)
        "host": entry.hostname if entry and operator else None,
        "remote": entry is not None,
        "version": t.version if t else None,
        "last_report_s": round(seen, 1) if seen is not None else None,
        "devices": devices,
    }


def _worker(registry: Registry, w: WorkerInfo, ttl: IdleTTL, operator: bool
            ) -> dict[str, Any]:
    kept = registry.is_kept_warm(w.id)
    idle = registry.idle_for(w) if w.state is WorkerState.READY else 0.0
    limit = ttl.for_model(w.model)
    unload_in = None if kept or limit <= 0 or w.state is not WorkerState.READY \
        else max(0.0, round(limit - idle, 1))
    return {"id": w.id, "model": w.model, "kind": w.kind, "engine": w.engine,
            "state": w.state.value, "stage": w.stage, "progress": w.progress,
            "inflight": registry.inflight(w.id), "slots": w.slots,
            # a worker's error text may name paths and hosts: /v1/workers is an operator's
            "memory_bytes": w.memory_bytes, "error": w.error if operator else None,
            "keep_warm": kept,
            "idle_s": round(idle, 1), "unload_in_s": unload_in,
            # a chat stream's data frames are its tokens (other kinds stream steps)
            "tokens_per_s": _rounded(registry.tokens_per_second(w.id))
            if w.kind == "chat" else None}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
