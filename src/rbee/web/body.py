"""JSON bodies parsed with pydantic regardless of Content-Type, errors as InvalidRequest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from rbee.core.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """(message, param) for the first of pydantic's (or FastAPI's) validation errors."""
    if not errors:
        return "invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    # FastAPI prefixes where the value came from ("body", "query"); clients name the field.
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    where = f" (at '{param}')" if param else ""
    return f"{first.get('msg', 'invalid value')}{where}", param


def parse_model(raw: bytes | str, model: type[M]) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        message, param = describe_errors(exc.errors(include_url=False))
        raise InvalidRequest(message, param=param) from None


async def parse_body(request: Request, model: type[M]) -> M:
    return parse_model(await request.body(), model)
