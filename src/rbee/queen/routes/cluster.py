"""Health, hive telemetry intake, and read-only cluster views."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from rbee import __version__
from rbee.api.cluster import HiveTelemetry, WorkerInfo
from rbee.core.errors import Unauthorized, WorkerNotFound
from rbee.queen.auth import principal_of
from rbee.queen.deps import ServicesDep
from rbee.queen.local_hive import HIVE_ID
from rbee.queen.registry import Registry
from rbee.queen.routes.openai import client_ip
from rbee.queen.supervision import HiveSupervisor
from rbee.web.auth import check_bearer
from rbee.web.body import parse_body

router = APIRouter()
# Compared against for an unknown hive: no presented token can match it (a NUL is not one).
_NO_HIVE = "\0no such hive"


@router.get("/health")
async def health(svc: ServicesDep) -> JSONResponse:
    """The queen answers, and whether it can serve:

    - `ok` (200): at least one hive is up, and so is the local hive if this queen runs one;
    - `degraded` (200): hives are up, but the local hive is not (it is being restarted);
    - `unavailable` (503): no hive is up, so inference cannot be served (also a queen with no
      local hive before any remote hive registered; it still takes jobs, e.g. hive installs).
    """
    body = health_report(svc.registry, svc.hive_supervisor)
    return JSONResponse(body, status_code=503 if body["status"] == "unavailable" else 200)


def health_report(registry: Registry, local: HiveSupervisor | None) -> dict[str, Any]:
    up = registry.hives_up()
    body: dict[str, Any] = {"version": __version__, "hives": len(registry.hive_ids()),
                            "hives_up": up, "local_hive": None}
    local_up = True
    if local is not None:
        local_up = HIVE_ID in up
        body["local_hive"] = {"up": local_up, "supervision": local.state,
                              "restarts": local.restarts, "last_exit": local.last_exit}
    body["status"] = "unavailable" if not up else "ok" if local_up else "degraded"
    return body


@router.post("/v1/hives/telemetry", status_code=204)
async def telemetry(request: Request, svc: ServicesDep) -> None:
    report = await parse_body(request, HiveTelemetry)
    creds = svc.credentials.get(report.hive_id)
    # An unknown hive gets the wrong-token answer, after a comparison all the same: the
    # endpoint is open, and must not tell a caller which hive ids exist.
    check_bearer(request.headers.get("authorization"),
                 creds.token if creds is not None else _NO_HIVE)
    if creds is None:
        raise Unauthorized("missing or invalid bearer token")  # check_bearer's own answer
    svc.registry.report(report)


@router.get("/v1/workers")
async def workers(svc: ServicesDep) -> list[WorkerInfo]:
    return svc.registry.listed_workers()


class KeepWarm(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    keep_warm: bool


@router.post("/v1/workers/{worker_id}/keep-warm")
async def keep_warm(worker_id: str, request: Request, svc: ServicesDep) -> dict[str, Any]:
    """Keep a running worker loaded (never unloaded for idleness or to make room), or let
    it go again: what `worker_spawn`'s `keep_warm` does at spawn time, for a live worker."""
    body = await parse_body(request, KeepWarm)
    if svc.registry.find_worker(worker_id) is None:
        raise WorkerNotFound(f"no worker {worker_id[:128]!r}", param="worker_id")
    svc.registry.keep_warm(worker_id, body.keep_warm)
    svc.audit.admin_change("worker.keep_warm", actor=principal_of(request).actor(
        client_ip(request)), subject=worker_id, outcome="ok",
        details={"keep_warm": body.keep_warm})
    return {"id": worker_id, "keep_warm": body.keep_warm}
