"""JSON bodies parsed with pydantic regardless of Content-Type, errors as InvalidRequest."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from rbee.core.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def validation_message(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return "request body is not valid JSON", None
    param = ".".join(str(p) for p in first["loc"]) or None
    where = f" (at '{param}')" if param else ""
    return f"{first['msg']}{where}", param


def parse_model(raw: bytes | str, model: type[M]) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        message, param = validation_message(exc)
        raise InvalidRequest(message, param=param) from None


async def parse_body(request: Request, model: type[M]) -> M:
    return parse_model(await request.body(), model)
