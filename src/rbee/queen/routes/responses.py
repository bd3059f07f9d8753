"""The Responses API: POST /v1/responses, GET and DELETE /v1/responses/{id}.

Behind the same middleware as every route (browser guard, bearer token, body limit); POST
runs under the client's deadline and stops when the client hangs up, like chat.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from rbee.api.responses import DeletedResponse, ResponseObject, ResponsesRequest
from rbee.core.errors import NotFound
from rbee.models.catalog import parse_ref
from rbee.queen.auth import principal_of
from rbee.queen.deps import ServicesDep
from rbee.queen.responses.answer import Owner, respond
from rbee.queen.routes.openai import hints_for, within_deadline
from rbee.queen.services import QueenServices
from rbee.storage.responses import StoredResponse
from rbee.web.body import parse_model

router = APIRouter(prefix="/v1")


@router.post("/responses", response_model=None,
             responses={200: {"model": ResponseObject,
                              "description": "The Response, or its event stream"}})
async def create_response(request: Request) -> Response:
    # The body is parsed here, not by FastAPI: one parser (and content-type check) for
    # every JSON endpoint, and errors that name the field as clients spell it.
    svc: QueenServices = request.app.state.services
    body = parse_model(await request.body(), ResponsesRequest,
                       request.headers.get("content-type"))
    hints = hints_for(request, parse_ref(body.model), body.model_extra or {})
    principal = principal_of(request)
    owner = Owner(principal.tenant_id, principal.owns, principal.user_id)
    return await within_deadline(request, svc,
                                 lambda deadline: respond(svc, body, hints, deadline, owner))


@router.get("/responses/{response_id}")
async def get_response(response_id: str, request: Request, svc: ServicesDep
                       ) -> ResponseObject:
    found = await _owned(response_id, request, svc)
    return ResponseObject.model_validate(found.response)


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request, svc: ServicesDep
                          ) -> DeletedResponse:
    await _owned(response_id, request, svc)
    if not await asyncio.to_thread(svc.responses.delete, response_id):
        raise _not_found(response_id)
    return DeletedResponse(id=response_id)


async def _owned(response_id: str, request: Request, svc: QueenServices) -> StoredResponse:
    """The stored response, if the caller's tenant may see it (else it does not exist)."""
    found = await asyncio.to_thread(svc.responses.get, response_id)
    if found is None or not principal_of(request).owns(found.tenant_id):
        raise _not_found(response_id)
    return found


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"no stored response {response_id!r}", param="response_id")
