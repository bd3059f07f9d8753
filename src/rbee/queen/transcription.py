"""POST /v1/audio/transcriptions and /v1/audio/translations on the queen.

The client's multipart upload streams to a temp file (`web.uploads`: bounded by
`max_upload_bytes`, a 413 past it), the form's fields are checked (a 400 naming each), and
the request goes through the same admission, failover and deadlines as every other. The
worker gets a multipart form again, rebuilt from the checked fields around the file: its
bytes stream from disk (`transport.FileBody`), read from the start for each worker tried.
The audio's length is the worker's to check (only decoding knows it), against the queen's
`max_audio_seconds`, sent as a field; it is also what the request is charged, so a text, srt
or vtt answer is asked of the worker as json or verbose_json and written here
(api.transcripts). The temp file is removed however the request ends:
answered, refused, failed, the client gone, the deadline passed.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from rbee.api.transcription import (
    MAX_AUDIO_FIELD,
    TRANSCRIPT_MEDIA_TYPES,
    Task,
    from_form,
    to_form,
)
from rbee.api.transcripts import client_answer, worker_format
from rbee.core.errors import InvalidRequest
from rbee.models.catalog import parse_ref, require_kind
from rbee.queen import forms
from rbee.queen.metering import audio_worst_case, demand_for
from rbee.queen.routes.openai import admitted, hints_for, within_deadline
from rbee.queen.services import QueenServices
from rbee.queen.settings import QueenSettings
from rbee.queen.transport import FileBody
from rbee.web.uploads import UPLOAD_PREFIX, Upload

UPLOAD_ROUTES: dict[str, Task] = {"/v1/audio/transcriptions": "transcribe",
                                  "/v1/audio/translations": "translate"}


def clear_stale_uploads(settings: QueenSettings) -> int:
    """Remove uploads a queen that died mid-request left behind (at start: none is ours)."""
    directory = settings.upload_dir or settings.state_dir / "uploads"
    stale = list(directory.glob(f"{UPLOAD_PREFIX}*")) if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def form_body(fields: list[tuple[str, str]], upload: Upload) -> FileBody:
    """A multipart form of `fields` and the uploaded file, the file's bytes left on disk."""
    return forms.form_body(fields, [("file", upload)])


async def _receive(request: Request, settings: QueenSettings) -> tuple[Upload | None,
                                                                        dict[str, list[str]]]:
    form = await forms.receive(request, settings, max_file_bytes=settings.max_upload_bytes)
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
        fmt = body.transcript_format()
        asked = body.model_copy(update={"response_format": worker_format(fmt)})
        sent = form_body([*to_form(asked, task), limit], upload)
        # Charged by the audio's seconds: at most what the upload can hold, until the
        # worker's answer says (its usage: a json answer's, or a stream's last event).
        demand = demand_for(audio_worst_case(upload.size, svc.settings.max_audio_seconds),
                            svc.quotas.prices(ref.name))
        # A streamed answer's body was read whole by the worker before its headers came:
        # the file is not needed once the response exists, whichever kind it is.
        response = await within_deadline(
            request, svc, lambda deadline: admitted(svc, body.stream, ref, hints, path, sent,
                                                    deadline, demand=demand))
        if body.stream or response.status_code != 200 or worker_format(fmt) == fmt:
            return response
        return Response(client_answer(bytes(response.body), fmt),
                        media_type=TRANSCRIPT_MEDIA_TYPES[fmt],
                        headers={k: v for k, v in response.headers.items()
                                 if k.startswith("x-ratelimit-")})
    finally:
        if upload is not None:
            upload.remove()


async def audio_transcriptions(request: Request) -> Response:
    return await _transcribe(request, "transcribe", "/v1/audio/transcriptions")


async def audio_translations(request: Request) -> Response:
    return await _transcribe(request, "translate", "/v1/audio/translations")


hot_routes = (("/v1/audio/transcriptions", audio_transcriptions),
              ("/v1/audio/translations", audio_translations))
