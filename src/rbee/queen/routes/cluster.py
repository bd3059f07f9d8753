"""Health, hive telemetry intake, and read-only cluster views."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from rbee import __version__
from rbee.api.cluster import HiveTelemetry, WorkerInfo
from rbee.core.errors import Unauthorized
from rbee.queen.deps import ServicesDep, require_api_token
from rbee.web.auth import check_bearer
from rbee.web.body import parse_body

router = APIRouter()


@router.get("/health")
async def health(svc: ServicesDep) -> dict[str, Any]:
    return {"status": "ok", "version": __version__, "hives": len(svc.registry.hive_ids())}


@router.post("/v1/hives/telemetry", status_code=204)
async def telemetry(request: Request, svc: ServicesDep) -> None:
    report = await parse_body(request, HiveTelemetry)
    creds = svc.credentials.get(report.hive_id)
    if creds is None:
        raise Unauthorized(f"unknown hive {report.hive_id!r}")
    check_bearer(request.headers.get("authorization"), creds.token)
    svc.registry.report(report)


@router.get("/v1/workers", dependencies=[Depends(require_api_token)])
async def workers(svc: ServicesDep) -> list[WorkerInfo]:
    return svc.registry.workers()
