"""Image requests on the queen, beyond what every inference route does.

Edits: the client's multipart form streams to temp files (`web.uploads`, each picture bounded
by `images_max_upload_bytes`: a 413 naming it), its text fields are checked (a 400 naming
each), and the worker gets a multipart form again whose pictures stream from that disk
(`forms.form_body`), re-read for each worker tried: no base64, nothing held whole in memory.
The temp files are removed however the request ends.

`response_format` url: the worker is asked for b64_json (a worker stores nothing); its
pictures are decoded here, stored as artifacts (one each, under the queen's retention) and
answered as absolute download URLs. A synchronous request has no job: its artifacts are
owned by the request (`request_owner`) and carry the caller's tenant, which the download
route checks.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rbee.api.images import EDIT_FILES, MEDIA_TYPES, ImageFormat, ImageRequest, edit_form
from rbee.core.errors import InvalidRequest, WorkerUnavailable
from rbee.queen import forms
from rbee.queen.services import QueenServices
from rbee.queen.transport import FileBody
from rbee.storage.artifacts import ArtifactStore, request_owner
from rbee.web.uploads import Form


async def receive_edit(request: Request, svc: QueenServices) -> Form:
    """The edit's form, its pictures on disk (the caller removes them: `Form.remove`)."""
    media = (request.headers.get("content-type") or "").partition(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise InvalidRequest("an image edit is a multipart/form-data upload (image, mask, "
                             "prompt, ...)", param="Content-Type")
    return await forms.receive(request, svc.settings, file_fields=EDIT_FILES,
                               max_file_bytes=svc.settings.images_max_upload_bytes)


def edit_body(body: ImageRequest, form: Form) -> FileBody:
    """The worker's form: the checked fields, then the pictures, streamed from disk."""
    if "image" not in form.files:
        raise InvalidRequest("an edit needs an image (a file field)", param="image")
    for name, upload in form.files.items():
        if upload.size == 0:
            raise InvalidRequest(f"{name} is empty", param=name)
    return forms.form_body(edit_form(body), [(n, form.files[n]) for n in EDIT_FILES
                                             if n in form.files])


def base_url(request: Request, public_url: str | None) -> str:
    """Where clients reach this queen: its `public_url`, else the address they used."""
    return (public_url or str(request.base_url)).rstrip("/")


async def as_urls(artifacts: ArtifactStore, response: Response, fmt: ImageFormat, base: str,
                  tenant_id: str | None) -> Response:
    """The worker's whole answer with each picture stored, its b64_json a download URL; an
    error answer as it came."""
    if response.status_code != 200:
        return response
    try:
        answer = json.loads(bytes(response.body))
        pictures = [base64.b64decode(d.pop("b64_json"), validate=True)
                    for d in answer["data"]]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise WorkerUnavailable(f"the worker's images could not be read: {exc}") from exc
    owner = request_owner()
    stored = []
    try:
        for index, data in enumerate(pictures):
            stored.append(await artifacts.put(
                _once(data), media_type=MEDIA_TYPES[fmt], owner=owner, tenant=tenant_id,
                filename=f"image-{uuid.uuid4().hex[:8]}-{index + 1}.{fmt}"))
    except BaseException:  # all or none: no picture left that nobody was told of
        artifacts.delete_owned(owner)
        raise
    for item, artifact in zip(answer["data"], stored, strict=True):
        item["url"] = base + artifact.url
    return JSONResponse(answer)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
