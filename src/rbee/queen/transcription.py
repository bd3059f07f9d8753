"""POST /v1/audio/transcriptions and /v1/audio/translations on the queen.

The client's multipart upload streams to a temp file (`web.uploads`: bounded by
`max_upload_bytes`, a 413 past it), the form's fields are checked (a 400 naming each), and
the request goes through the same admission, failover and deadlines as every other. The
worker gets a multipart form again, rebuilt from the checked fields around the file: its
bytes stream from disk (`transport.FileBody`), read from the start for each worker tried.
The audio's length is the worker's to check (only decoding knows it), against the queen's
`max_audio_seconds`, sent as a field. The temp file is removed however the request ends:
answered, refused, failed, the client gone, the deadline passed.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from rbee.api.transcription import (
    MAX_AUDIO_FIELD,
    TRANSCRIPT_MEDIA_TYPES,
    Task,
    from_form,
    to_form,
)
from rbee.core.errors import DeadlineExceeded, InvalidRequest
from rbee.core.private import private_dir
from rbee.models.catalog import parse_ref, require_kind
from rbee.queen.calls import client_deadline
from rbee.queen.routes.openai import admitted, hints_for, within_deadline
from rbee.queen.services import QueenServices
from rbee.queen.settings import QueenSettings
from rbee.queen.transport import FileBody
from rbee.web.uploads import UPLOAD_PREFIX, Upload, receive_form

UPLOAD_ROUTES: dict[str, Task] = {"/v1/audio/transcriptions": "transcribe",
                                  "/v1/audio/translations": "translate"}
# What may stand in a multipart header's quoted value: no quotes, no line breaks.
_UNSAFE = re.compile(r'[^A-Za-z0-9 ._+()\[\]-]')


def upload_dir(settings: QueenSettings) -> Path:
    return private_dir(settings.upload_dir or settings.state_dir / "uploads")


def clear_stale_uploads(settings: QueenSettings) -> int:
    """Remove uploads a queen that died mid-request left behind (at start: none is ours)."""
    directory = settings.upload_dir or settings.state_dir / "uploads"
    stale = list(directory.glob(f"{UPLOAD_PREFIX}*")) if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def form_body(fields: list[tuple[str, str]], upload: Upload) -> FileBody:
    """A multipart form of `fields` and the uploaded file, the file's bytes left on disk."""
    boundary = f"rbee-{secrets.token_hex(16)}"
    head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   f"{value}\r\n" for name, value in fields)
    filename = _UNSAFE.sub("_", upload.filename)[:128] or "audio"
    media = _UNSAFE.sub("_", upload.content_type.replace("/", "+"))[:128].replace("+", "/", 1)
    head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
             f'filename="{filename}"\r\nContent-Type: {media or "application/octet-stream"}'
             "\r\n\r\n")
    return FileBody(upload.path, upload.size, f"multipart/form-data; boundary={boundary}",
                    head=head.encode(), tail=f"\r\n--{boundary}--\r\n".encode())


async def _receive(request: Request, settings: QueenSettings) -> tuple[Upload | None,
                                                                        dict[str, list[str]]]:
    """The upload on disk, under the client's deadline (a trickled upload ends there)."""
    loop = asyncio.get_running_loop()
    deadline = client_deadline(request.headers, loop.time(), settings.max_request_timeout)
    try:
        async with asyncio.timeout_at(deadline.by(loop.time())):
            form = await receive_form(request, directory=upload_dir(settings),
                                      max_file_bytes=settings.max_upload_bytes)
    except TimeoutError:
        raise DeadlineExceeded("the request's deadline passed during the upload") from None
    return form.file, form.fields


async def _transcribe(request: Request, task: Task, path: str) -> Response:
    svc: QueenServices = request.app.state.services
    upload, fields = await _receive(request, svc.settings)
    try:
        body = from_form(fields, task)
        ref = require_kind(parse_ref(body.model), "transcription")
        if upload is None:
            raise InvalidRequest("the form has no file: send the audio as its file field",
                                 param="file")
        if upload.size == 0:
            raise InvalidRequest("the file is empty", param="file")
        hints = hints_for(request, ref, body.model_extra or {})
        limit = (MAX_AUDIO_FIELD, f"{svc.settings.max_audio_seconds:g}")
        form = [*to_form(body, task), limit]
        sent = form_body(form, upload)
        media = TRANSCRIPT_MEDIA_TYPES[body.transcript_format()]
        # A streamed answer's body was read whole by the worker before its headers came:
        # the file is not needed once the response exists, whichever kind it is.
        return await within_deadline(
            request, svc, lambda deadline: admitted(svc, body.stream, ref, hints, path, sent,
                                                    deadline, media_type=media))
    finally:
        if upload is not None:
            upload.remove()


async def audio_transcriptions(request: Request) -> Response:
    return await _transcribe(request, "transcribe", "/v1/audio/transcriptions")


async def audio_translations(request: Request) -> Response:
    return await _transcribe(request, "translate", "/v1/audio/translations")


hot_routes = (("/v1/audio/transcriptions", audio_transcriptions),
              ("/v1/audio/translations", audio_translations))
