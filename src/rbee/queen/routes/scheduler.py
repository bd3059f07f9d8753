"""The scheduler's own endpoints: a dry run ("where would this go, and why") and its state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from rbee.api.jobs import ExplainRequest, ScriptCheck, ScriptCheckRequest
from rbee.queen.deps import ServicesDep
from rbee.queen.scripts import compile_script
from rbee.scheduler.lua import ScriptInvalid
from rbee.web.body import parse_body

router = APIRouter(prefix="/v1/scheduler")


@router.post("/explain")
async def explain(request: Request, svc: ServicesDep) -> dict[str, Any]:
    """Route and placement decisions for a model on the live cluster; nothing changes."""
    return await svc.operations.explain(await parse_body(request, ExplainRequest))


@router.post("/check", response_model=ScriptCheck)
async def check(request: Request) -> ScriptCheck:
    """Compile a script in the queen's sandbox. A script that does not compile is the
    answer (`ok: false`, the Lua error and its line), not a bad request: that is what an
    editor checking as one types needs. A body that is not a script is a 400."""
    body = await parse_body(request, ScriptCheckRequest)
    try:
        script = await compile_script(body.source, body.name)
    except ScriptInvalid as exc:
        return ScriptCheck(ok=False, message=exc.message, line=exc.line)
    hooks = [h for h, has in (("route", script.has_route), ("place", script.has_place)) if has]
    return ScriptCheck(ok=True, hooks=hooks)


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
        "unloaded_idle": list(svc.watchdog.unloaded),
    }
