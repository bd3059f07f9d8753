"""The job API: submit, list, inspect, stream and cancel jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from rbee.api import sse
from rbee.api.jobs import OPERATIONS, JobCreated, JobList, JobSummary, VideoOp
from rbee.core.errors import InvalidRequest, UnknownOperation
from rbee.queen.deps import ServicesDep
from rbee.queen.jobs import RESTART_SEQ
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
    op = parse_model(raw, OPERATIONS[name], content_type)
    if isinstance(op, VideoOp):  # its bounds are the queen's settings: a 400 now, not a job
        plan(op, svc.settings)
    job_id = svc.jobs.submit(name, op, body)
    return JobCreated(job_id=job_id, sse_url=f"/v1/jobs/{job_id}/stream")


@router.get("", response_model=JobList)
async def list_jobs(svc: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                    state: str | None = None) -> JobList:
    return JobList(data=svc.jobs.recent(limit, state))


@router.get("/{job_id}", response_model=JobSummary)
async def get_job(job_id: str, svc: ServicesDep) -> JobSummary:
    return svc.jobs.summary(job_id)


@router.delete("/{job_id}", response_model=JobSummary)
async def cancel_job(job_id: str, svc: ServicesDep) -> JobSummary:
    svc.jobs.summary(job_id)  # 404 for unknown ids before anything else
    return await svc.jobs.cancel(job_id)


@router.get("/{job_id}/stream")
async def stream(job_id: str, svc: ServicesDep,
                 last_event_id: Annotated[str | None, Header()] = None,
                 after: Annotated[int | None, Query(ge=-1)] = None) -> DisconnectAwareStream:
    if not svc.jobs.exists_live(job_id):
        svc.jobs.summary(job_id)  # raises JobNotFound
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
