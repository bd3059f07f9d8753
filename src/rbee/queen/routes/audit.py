"""The audit log's API under /v1/admin/audit: list (filters, cursor), verify, export.

Admin only: the key-checking middleware guards every path under /v1/admin/ by role.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import StreamingResponse

from rbee.api.audit import AuditEntry, AuditPage, AuditVerdict
from rbee.queen.deps import ServicesDep
from rbee.storage.audit import Filters

router = APIRouter(prefix="/v1/admin/audit")
MAX_FILTER = 200  # characters: filters are names, not documents


@router.get("", response_model=AuditPage)
async def list_entries(
    svc: ServicesDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="cursor: entries after it")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=MAX_FILTER,
                                        description="prefix, e.g. admin.")] = None,
    outcome: Annotated[str | None, Query(max_length=MAX_FILTER)] = None,
    tenant: Annotated[str | None, Query(max_length=MAX_FILTER)] = None,
    subject: Annotated[str | None, Query(max_length=MAX_FILTER, description="a thing's "
                                         "name, or a person (found by pseudonym)")] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    until: Annotated[float | None, Query(ge=0, le=1e11)] = None,
) -> AuditPage:
    found = await svc.audit.page(Filters(after=after, limit=limit, action=action,
                                         outcome=outcome, tenant=tenant, subject=subject,
                                         since=since, until=until))
    data = [AuditEntry(**e.to_json(), personal=clear) for e, clear in found]
    return AuditPage(data=data, next_cursor=data[-1].seq if len(data) == limit else None)


@router.get("/verify", response_model=AuditVerdict)
async def verify(svc: ServicesDep, archives: bool = False) -> AuditVerdict:
    """Walk the chain (and the archive files first, with `archives`); name the first entry
    that does not match. 200 either way: a broken chain is a finding, not a failed call."""
    verdict = await svc.audit.verify(archives)
    return AuditVerdict.model_validate(verdict.to_json())


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}},
                             "description": "A header line with the chain head, then one "
                             "entry per line"}})
async def export(svc: ServicesDep) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        async for chunk in svc.audit.export():
            yield chunk.encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"Content-Disposition": "attachment; "
                                      "filename=rbee-audit.jsonl"})
