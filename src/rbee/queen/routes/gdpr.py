"""The GDPR API: GET /gdpr/export, POST /gdpr/delete, POST /gdpr/consent, and
POST /gdpr/receipts/verify. Any valid key may call them; queen.gdpr decides about whom."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from rbee.api.gdpr import Consent, ConsentRequest, DeleteRequest, Receipt, ReceiptCheck
from rbee.queen.auth import principal_of
from rbee.queen.deps import ServicesDep
from rbee.queen.routes.openai import client_ip
from rbee.web.body import parse_model, parse_object

router = APIRouter(prefix="/gdpr")


@router.get("/export")
async def export(request: Request, svc: ServicesDep,
                 subject: Annotated[str, Query(min_length=1, max_length=64)]) -> JSONResponse:
    """Everything held about a user, machine-readable (`format: rbee-gdpr-export/1`)."""
    principal = principal_of(request)
    data: dict[str, Any] = await svc.gdpr.export(principal, subject,
                                                 principal.actor(client_ip(request)))
    return JSONResponse(data)


@router.post("/delete")
async def delete(request: Request, svc: ServicesDep) -> Receipt:
    body = parse_model(await request.body(), DeleteRequest, request.headers.get("content-type"))
    principal = principal_of(request)
    return await svc.gdpr.erase(principal, body.subject, principal.actor(client_ip(request)))


@router.post("/consent")
async def consent(request: Request, svc: ServicesDep) -> Consent:
    body = parse_model(await request.body(), ConsentRequest,
                       request.headers.get("content-type"))
    principal = principal_of(request)
    return await svc.gdpr.consent(principal, body, principal.actor(client_ip(request)))


@router.post("/receipts/verify")
async def verify_receipt(request: Request, svc: ServicesDep) -> ReceiptCheck:
    """Whether this queen issued the receipt, unchanged."""
    body = parse_object(await request.body(), request.headers.get("content-type"))
    return ReceiptCheck(valid=svc.gdpr.verify(body))
