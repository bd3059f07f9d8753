"""The job API: submit, list, inspect, stream and cancel jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel

from rbee.api import sse
from rbee.api.jobs import (
    OPERATIONS,
    JobCreated,
    JobList,
    JobSummary,
    Placement,
    TranscribeOp,
    VideoOp,
)
from rbee.core.errors import InvalidRequest, UnknownOperation
from rbee.models.catalog import parse_ref
from rbee.queen.artifact_access import open_owned
from rbee.queen.auth import principal_of
from rbee.queen.deps import ServicesDep
from rbee.queen.identity import Principal, operation_role
from rbee.queen.job_charges import DEFAULT_MODELS, submit_charged
from rbee.queen.jobs import RESTART_SEQ
from rbee.queen.routes.openai import client_ip
from rbee.queen.videos import plan
from rbee.web.body import parse_model, parse_object
from rbee.web.streaming import DisconnectAwareStream

router = APIRouter(prefix="/v1/jobs")
KEEPALIVE_SECONDS = 15.0


@router.post("", response_model=JobCreated)
async def submit(request: Request, svc: ServicesDep) -> JobCreated:
    raw = await request.body()
    content_type = request.headers.get("content-type")
    body = parse_object(raw, content_type)
    name = body.get("operation")
    if not isinstance(name, str) or name not in OPERATIONS:
        raise UnknownOperation(f"unknown operation {name!r}; known: {', '.join(OPERATIONS)}",
                               param="operation")
    principal = principal_of(request)
    principal.require(operation_role(name), f"operation {name}")
    op = _scoped(principal, name, parse_model(raw, OPERATIONS[name], content_type),
                 svc.settings.default_model)
    if isinstance(op, Placement):  # inference jobs: the tenant's consent rule (GDPR)
        svc.gdpr.consents.require(principal)
    if isinstance(op, VideoOp):  # its bounds are the queen's settings: a 400 now, not a job
        plan(op, svc.settings)
    if isinstance(op, TranscribeOp):  # the file must be the caller's: a 404 now, not a job
        open_owned(svc.artifacts, svc.jobs, principal, op.file_id, param="file_id")
    # its worst case on the tenant's quotas: a 429 before the job exists
    job_id = submit_charged(svc, principal, name, op, body, len(raw),
                            principal.actor(client_ip(request)))
    return JobCreated(job_id=job_id, sse_url=f"/v1/jobs/{job_id}/stream")


def _scoped(principal: Principal, name: str, op: BaseModel, default_model: str) -> BaseModel:
    """An inference job within its key's scope (model, priority), run for its tenant."""
    if not isinstance(op, Placement):
        return op
    principal.check_priority(op.priority)
    model = getattr(op, "model", "") or DEFAULT_MODELS.get(name, default_model)
    principal.check_model(parse_ref(model).name)
    if principal.tenant is None:  # the queen's own admin may run a job for any tenant
        return op
    return op.model_copy(update={"tenant": principal.tenant})


@router.get("", response_model=JobList)
async def list_jobs(request: Request, svc: ServicesDep,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                    state: str | None = None) -> JobList:
    principal = principal_of(request)
    tenant_id = None if principal.sees_all_tenants() else principal.tenant_id
    return JobList(data=svc.jobs.recent(limit, state, tenant_id))


@router.get("/{job_id}", response_model=JobSummary)
async def get_job(job_id: str, request: Request, svc: ServicesDep) -> JobSummary:
    svc.jobs.check_owner(job_id, principal_of(request).owns)
    return svc.jobs.summary(job_id)


@router.delete("/{job_id}", response_model=JobSummary)
async def cancel_job(job_id: str, request: Request, svc: ServicesDep) -> JobSummary:
    svc.jobs.check_owner(job_id, principal_of(request).owns)  # 404 before anything else
    return await svc.jobs.cancel(job_id)


@router.get("/{job_id}/stream")
async def stream(job_id: str, request: Request, svc: ServicesDep,
                 last_event_id: Annotated[str | None, Header()] = None,
                 after: Annotated[int | None, Query(ge=-1)] = None) -> DisconnectAwareStream:
    svc.jobs.check_owner(job_id, principal_of(request).owns)
    start = _resume_point(after if after is not None else _last_id(last_event_id))

    async def frames() -> AsyncIterator[bytes]:
        async for event in svc.jobs.events(job_id, start, keepalive=KEEPALIVE_SECONDS):
            if event is None:
                yield sse.KEEPALIVE
            else:
                yield sse.event_frame(event.seq, event.event, event.data)

    return DisconnectAwareStream(frames())


def _resume_point(after: int) -> int:
    """Any id past every id a job can send means the same (send the end): keep it in SQLite's
    integer range."""
    return min(after, RESTART_SEQ + 1)


def _last_id(header: str | None) -> int:
    if header is None:
        return -1
    try:
        return max(-1, int(header.strip()))
    except ValueError:
        raise InvalidRequest("Last-Event-ID must be an integer", param="Last-Event-ID") from None
