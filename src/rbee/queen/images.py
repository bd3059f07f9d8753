"""The image edit form (multipart, as OpenAI's SDK sends it) read into the worker's JSON.

Starlette's form parser bounds each plain field (`max_part_size`) and spools files to disk past
1 MiB; each file is then bounded by the queen's `images_max_upload_bytes` (a 413 naming it).
The worker gets the pictures base64 in JSON, decoded and checked there (where PIL is).

At the merge with the streamed uploads (transcription's branch), this is what changes: the
form is read by that helper (parts streamed to disk, never whole in memory) and the pictures
go to the worker as a file body instead of base64 in JSON.
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from rbee.core.errors import BodyTooLarge, InvalidRequest

# Plain fields are short (a prompt is at most 32,000 characters: 128 KB of UTF-8).
MAX_FIELD_BYTES = 256 * 1024
_FILES = ("image", "mask")
# Numbers and flags a form sends as text, typed as the JSON endpoint takes them.
_INTS = ("n", "output_compression", "partial_images", "steps", "seed")
_FLOATS = ("guidance_scale",)
_BOOLS = ("stream",)


async def edit_body(request: Request, max_upload: int) -> dict[str, Any]:
    """The edit request as JSON fields (pictures base64); a 400/413 naming what is wrong."""
    media = (request.headers.get("content-type") or "").partition(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise InvalidRequest("an image edit is a multipart/form-data upload (image, mask, "
                             "prompt, ...)", param="Content-Type")
    try:
        form = await request.form(max_files=4, max_fields=64, max_part_size=MAX_FIELD_BYTES)
    except HTTPException as exc:  # the parser's own refusals: a field too big, too many
        raise InvalidRequest(f"the form could not be read: {exc.detail}") from None
    try:
        body: dict[str, Any] = {}
        for key, value in form.multi_items():
            name = key.removesuffix("[]")  # the SDK sends image[] for a list of images
            if isinstance(value, UploadFile):
                if name not in _FILES:
                    raise InvalidRequest(f"unexpected file field {key[:40]!r}", param=key[:40])
                if name in body:
                    raise InvalidRequest(f"one {name} per edit", param=name)
                body[name] = await _read_file(value, name, max_upload)
            else:
                body[name] = _typed(name, value)
        if "image" not in body:
            raise InvalidRequest("an edit needs an image (a file field)", param="image")
        return body
    finally:
        await form.close()


async def _read_file(upload: UploadFile, name: str, max_upload: int) -> str:
    if upload.size is not None and upload.size > max_upload:
        raise BodyTooLarge(f"{name} is {upload.size} bytes; at most {max_upload} are allowed",
                           param=name)
    data = await upload.read(max_upload + 1)
    if len(data) > max_upload:
        raise BodyTooLarge(f"{name} is over {max_upload} bytes", param=name)
    if not data:
        raise InvalidRequest(f"{name} is empty", param=name)
    return base64.b64encode(data).decode()


def _typed(name: str, value: str) -> Any:
    try:
        if name in _INTS:
            return int(value)
        if name in _FLOATS:
            return float(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number, got {value[:32]!r}",
                             param=name) from None
    if name in _BOOLS:
        if value not in ("true", "false"):
            raise InvalidRequest(f"{name} must be true or false", param=name)
        return value == "true"
    return value
