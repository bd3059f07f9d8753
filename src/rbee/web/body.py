"""JSON request bodies: a JSON Content-Type is required, then pydantic validates; every
failure is an OpenAI envelope (400, or 415 for a body that is not declared JSON).

Every JSON endpoint parses through here, so limits (nesting depth, content type) are the same
on all of them. Only the JSON endpoints check the content type: a multipart upload endpoint
does not come through here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json
from starlette.requests import Request

from rbee.core.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)
NOT_JSON = "request body is not valid JSON"


class UnsupportedMediaType(InvalidRequest):
    """415: a body sent as anything but JSON. Browsers send text/plain and form types
    cross-origin without a preflight, so accepting them would let any web page drive an
    unauthenticated local queen."""

    http_status = 415
    code = "unsupported_media_type"


def is_json_type(content_type: str | None) -> bool:
    """`application/json` or `application/*+json`, with any parameters (`; charset=utf-8`)."""
    if content_type is None:
        return False
    if content_type == "application/json":  # what nearly every client sends: no parsing
        return True
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


def require_json(raw: bytes | str, content_type: str | None) -> None:
    """An empty body is left to the parser (a 400 that says what is missing)."""
    if raw and not is_json_type(content_type):
        raise UnsupportedMediaType(
            "request body must be JSON: send Content-Type: application/json",
            param="Content-Type")


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """(message, param) for the first of pydantic's (or FastAPI's) validation errors.
    Never quotes the input: it is the client's, and may carry control characters."""
    if not errors:
        return "invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return NOT_JSON, None
    # FastAPI prefixes where the value came from ("body", "query"); clients name the field.
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    where = f" (at '{param}')" if param else ""
    return f"{first.get('msg', 'invalid value')}{where}", param


def parse_model(raw: bytes | str, model: type[M], content_type: str | None) -> M:
    require_json(raw, content_type)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        message, param = describe_errors(exc.errors(include_url=False))
        raise InvalidRequest(message, param=param) from None


def parse_object(raw: bytes | str, content_type: str | None) -> dict[str, Any]:
    """The body as a plain JSON object, for routes that look at it before choosing a model.
    The same parser as `parse_model` (jiter): its nesting limit makes a deep body a 400,
    where `json.loads` raised RecursionError (a 500)."""
    require_json(raw, content_type)
    try:
        body = from_json(raw, allow_inf_nan=False)
    except ValueError:
        raise InvalidRequest(NOT_JSON) from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


async def parse_body(request: Request, model: type[M]) -> M:
    return parse_model(await request.body(), model, request.headers.get("content-type"))
