"""OpenAI's Files API, the part a job needs: POST /v1/files (an upload streamed to disk,
bounded by `max_upload_bytes`, then into the artifact store), GET /v1/files/{id},
GET /v1/files/{id}/content (streamed), DELETE /v1/files/{id}. A file is an artifact owned by
no job, carrying its tenant: only that tenant's keys see it; retention removes it."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from starlette.responses import StreamingResponse

from rbee.api.files import PURPOSE, FileDeleted, FileObject
from rbee.core.errors import InvalidRequest
from rbee.queen import forms
from rbee.queen.artifact_access import open_owned
from rbee.queen.auth import principal_of
from rbee.queen.deps import ServicesDep
from rbee.queen.services import QueenServices
from rbee.queen.transport import file_chunks
from rbee.storage.artifacts import Artifact, gone, request_owner
from rbee.web.files import file_response

router = APIRouter(prefix="/v1")
ROUTE = "/v1/files"  # an upload: bounded as it streams to disk, not by the body limit
# A download name (Content-Disposition) keeps to plain characters.
_UNSAFE = re.compile(r"[^A-Za-z0-9._()-]")
# Media types served back as sent: media only. Anything else (text/html, say) downloads as
# bytes, never rendered by a browser from the queen's origin.
_MEDIA = re.compile(r"^(audio|video|image)/[a-z0-9.+-]{1,64}$")


def _media_type(sent: str) -> str:
    media = sent.partition(";")[0].strip().lower()
    return media if _MEDIA.match(media) else "application/octet-stream"


def _object(svc: QueenServices, artifact: Artifact) -> FileObject:
    retention = svc.settings.artifact_retention
    return FileObject(id=artifact.id, bytes=artifact.bytes, created_at=int(artifact.created_at),
                      filename=artifact.filename,
                      expires_at=int(artifact.created_at + retention) if retention > 0
                      else None)


@router.post("/files", response_model=FileObject)
async def create_file(request: Request, svc: ServicesDep) -> FileObject:
    principal = principal_of(request)
    form = await forms.receive(request, svc.settings,
                               max_file_bytes=svc.settings.max_upload_bytes)
    try:
        purpose = form.fields.get("purpose", [""])[-1]
        if purpose != PURPOSE:
            raise InvalidRequest(f"purpose {purpose[:40]!r}: rbee keeps files for jobs to read "
                                 f"(transcribe): send purpose {PURPOSE}", param="purpose")
        upload = form.file
        if upload is None:
            raise InvalidRequest("the form has no file: send it as its file field",
                                 param="file")
        if upload.size == 0:
            raise InvalidRequest("the file is empty", param="file")
        artifact = await svc.artifacts.put(
            file_chunks(upload.path, upload.size),
            media_type=_media_type(upload.content_type),
            owner=request_owner(), tenant=principal.tenant_id,
            filename=_UNSAFE.sub("_", upload.filename)[:128] or "upload")
    finally:
        form.remove()
    return _object(svc, artifact)


@router.get("/files/{file_id}", response_model=FileObject)
async def retrieve_file(file_id: str, request: Request, svc: ServicesDep) -> FileObject:
    artifact, _ = open_owned(svc.artifacts, svc.jobs, principal_of(request), file_id,
                             param="file_id")
    return _object(svc, artifact)


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, request: Request, svc: ServicesDep) -> StreamingResponse:
    artifact, path = open_owned(svc.artifacts, svc.jobs, principal_of(request), file_id,
                                param="file_id")
    return file_response(path, media_type=artifact.media_type, filename=artifact.filename,
                         missing=gone(artifact.id, param="file_id"))


@router.delete("/files/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: str, request: Request, svc: ServicesDep) -> FileDeleted:
    open_owned(svc.artifacts, svc.jobs, principal_of(request), file_id, param="file_id")
    return FileDeleted(id=file_id, deleted=svc.artifacts.delete(file_id))
