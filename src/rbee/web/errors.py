"""Exception handlers: every error leaves as an OpenAI envelope with the right status."""

from __future__ import annotations

import logging
import math
import uuid
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ExceptionHandler

from rbee.core.errors import RbeeError
from rbee.web.body import describe_errors

if TYPE_CHECKING:  # FastAPI is imported only by the daemons that use it (the worker doesn't)
    from fastapi import FastAPI

logger = logging.getLogger(__name__)

_STATUS_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
                 405: "invalid_request_error", 413: "invalid_request_error",
                 429: "rate_limit_exceeded"}


def envelope(status: int, message: str, type_: str, code: str | None, param: str | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(exc: RbeeError) -> JSONResponse:
    headers: dict[str, str] | None = None
    if exc.http_status in (429, 503):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after or 1)))}
        # a quota's x-ratelimit-* headers (queen.quotas.QuotaExceeded)
        headers.update(getattr(exc, "headers", None) or {})
    return envelope(exc.http_status, exc.message, exc.openai_type, exc.code, exc.param, headers)


def internal_error_response(exc: Exception) -> JSONResponse:
    """A 500 with a request id; the traceback is logged once, the client sees no internals."""
    request_id = uuid.uuid4().hex[:12]
    logger.exception("unhandled error (request %s)", request_id, exc_info=exc)
    return envelope(500, f"internal error (request {request_id})", "server_error", None)


async def _rbee_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RbeeError)
    return error_response(exc)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    type_ = _STATUS_TYPES.get(exc.status_code, "invalid_request_error")
    return envelope(exc.status_code, str(exc.detail), type_, None)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    return internal_error_response(exc)


def exception_handlers() -> dict[type[Exception], ExceptionHandler]:
    """Handlers for a plain Starlette app."""
    return {RbeeError: _rbee_error, StarletteHTTPException: _http_error, Exception: _unexpected}


def install_error_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = describe_errors(exc.errors())
        return envelope(400, message, "invalid_request_error", "invalid_request", param)

    for cls, handler in exception_handlers().items():
        app.add_exception_handler(cls, handler)
    app.add_exception_handler(RequestValidationError, validation_error)
