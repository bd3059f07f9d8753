"""The job API: submit, list, inspect, stream and cancel jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel

from rbee.api import sse
from rbee.api.jobs import (
    OPERATIONS,
    EmbedOp,
    InferOp,
    JobCreated,
    JobList,
    JobSummary,
    Placement,
    TranscribeOp,
    VideoOp,
)
from rbee.core.errors import InvalidRequest, UnknownOperation
from rbee.models.catalog import DEFAULT_EMBEDDING_MODEL, parse_ref
from rbee.queen.artifact_access import open_owned
from rbee.queen.auth import principal_of
from rbee.queen.deps import ServicesDep
from rbee.queen.identity import Principal, operation_role
from rbee.queen.jobs import RESTART_SEQ
from rbee.queen.metering import text_demand
from rbee.queen.quotas import Account, Charge
from rbee.queen.routes.openai import client_ip
from rbee.queen.services import QueenServices
from rbee.queen.videos import plan
from rbee.web.body import parse_model, parse_object
from rbee.web.streaming import DisconnectAwareStream

router = APIRouter(prefix="/v1/jobs")
KEEPALIVE_SECONDS = 15.0
# The model an inference operation runs when its body names none (others: the queen's default).
_DEFAULT_MODELS = {"embed": DEFAULT_EMBEDDING_MODEL}


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
    charge = _charge(svc, principal, name, op, len(raw))  # a 429 before the job exists
    try:
        job_id = svc.jobs.submit(name, op, body, principal.tenant_id,
                                 principal.actor(client_ip(request)))
    except BaseException:
        if charge is not None:
            charge.refund()
        raise
    if charge is not None:
        svc.quotas.hold(job_id, charge)  # the job settles it (queen.operations)
        # ...or, cancelled before it ever ran, gives it back
        svc.jobs.on_done(job_id, lambda: _refund_unclaimed(svc, job_id))
    return JobCreated(job_id=job_id, sse_url=f"/v1/jobs/{job_id}/stream")


def _refund_unclaimed(svc: QueenServices, job_id: str) -> None:
    charge = svc.quotas.take(job_id)
    if charge is not None:
        charge.refund()


def _charge(svc: QueenServices, principal: Principal, name: str, op: BaseModel,
            size: int) -> Charge | None:
    """An inference job books its worst case on its tenant's quotas, as a request does."""
    if principal.tenant_id is None or not isinstance(op, InferOp | EmbedOp):
        return None
    model = parse_ref(op.model or _DEFAULT_MODELS.get(name, svc.settings.default_model)).name
    output = (op.max_tokens, op.n) if isinstance(op, InferOp) else (0, 1)
    demand = text_demand(size, *output, svc.quotas.price_of(model))
    account = Account(principal.tenant_id, principal.key_id, principal.tenant)
    return svc.quotas.reserve(account, model, demand)


def _scoped(principal: Principal, name: str, op: BaseModel, default_model: str) -> BaseModel:
    """An inference job within its key's scope (model, priority), run for its tenant."""
    if not isinstance(op, Placement):
        return op
    principal.check_priority(op.priority)
    model = getattr(op, "model", "") or _DEFAULT_MODELS.get(name, default_model)
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
