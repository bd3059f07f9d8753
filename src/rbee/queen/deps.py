"""Request-scoped access to the queen's services (the key check: queen.auth.KeyAuth)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from rbee.queen.services import QueenServices


async def services(request: Request) -> QueenServices:
    found: QueenServices = request.app.state.services
    return found


ServicesDep = Annotated[QueenServices, Depends(services)]
