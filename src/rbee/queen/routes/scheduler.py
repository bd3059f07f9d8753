"""The scheduler's own endpoints: a dry run ("where would this go, and why") and its state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from rbee.api.jobs import ExplainRequest
from rbee.queen.deps import ServicesDep
from rbee.web.body import parse_body

router = APIRouter(prefix="/v1/scheduler")


@router.post("/explain")
async def explain(request: Request, svc: ServicesDep) -> dict[str, Any]:
    """Route and placement decisions for a model on the live cluster; nothing changes."""
    return await svc.operations.explain(await parse_body(request, ExplainRequest))


@router.get("")
async def state(svc: ServicesDep) -> dict[str, Any]:
    policy = svc.dispatcher.policy
    snapshot = svc.registry.snapshot()
    script = policy.script
    models = sorted({w.info.model for w in snapshot.workers})
    return {
        "routing_policy": policy.routing, "placement_policy": policy.placement,
        "script": {"name": script.name, **policy.stats.to_dict()} if script else None,
        "memory_budget": snapshot.budget,
        "devices": [{"key": f"{h.id}/{d.id}", "memory_total": d.memory_total,
                     "memory_free": d.memory_free,
                     "reserved": snapshot.reserved.get(f"{h.id}/{d.id}", 0),
                     "available": snapshot.available(h.id, d)}
                    for h in snapshot.hives for d in h.devices],
        "queues": {m: {"active": svc.admission.active(m), "queued": svc.admission.queued(m)}
                   for m in models},
        "unloaded_idle": list(svc.watchdog.unloaded[-20:]),
    }
