"""Request-scoped access to the queen's services and the API-token check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from rbee.queen.services import QueenServices
from rbee.web.auth import check_bearer


async def services(request: Request) -> QueenServices:
    found: QueenServices = request.app.state.services
    return found


ServicesDep = Annotated[QueenServices, Depends(services)]


async def require_api_token(request: Request) -> None:
    svc: QueenServices = request.app.state.services
    check_bearer(request.headers.get("authorization"), svc.settings.api_token)
