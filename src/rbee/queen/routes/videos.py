"""OpenAI's Videos API (a video is a `video` job) and artifact downloads.

POST /v1/videos takes JSON or the multipart form the official SDKs send (a small form of
text fields, parsed with the standard library's MIME parser; the body is already bounded by
BodyLimit). A reference image (`input_reference`) is a 400: text-to-video only. Downloads
stream the file from disk, never read whole into memory.
"""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from rbee.api.videos import Video, VideoCreateRequest, VideoDeleted, VideoList
from rbee.core.errors import InvalidRequest
from rbee.queen.artifact_access import open_owned
from rbee.queen.auth import principal_of
from rbee.queen.deps import ServicesDep
from rbee.queen.job_charges import submit_charged
from rbee.queen.routes.openai import client_ip
from rbee.queen.videos import OPERATION
from rbee.storage.artifacts import gone
from rbee.web.body import describe_errors, parse_object
from rbee.web.files import file_response

router = APIRouter(prefix="/v1")
# rbee's placement hints, as on the other inference routes (the SDK's extra_body)
HINTS = ("hive_id", "device", "worker_id", "placement", "priority", "tenant")
_INTEGERS = ("steps", "seed")  # form fields are text: these become numbers
POLL_AFTER_MS = "500"  # what create_and_poll waits between polls (OpenAI's header)


def _form(raw: bytes, content_type: str) -> dict[str, Any]:
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        raise InvalidRequest("the multipart body could not be parsed", param="Content-Type")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        if part.get_filename() is not None or name == "input_reference":
            raise InvalidRequest("input_reference is not supported: rbee's video models make "
                                 "videos from text only (leave it out)",
                                 param="input_reference")
        payload = part.get_payload(decode=True)
        value = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        fields[name] = int(value) if name in _INTEGERS and value.isdigit() else value
    return fields


def _body(raw: bytes, content_type: str | None) -> tuple[VideoCreateRequest, dict[str, Any]]:
    """The request and rbee's hints from it (hints are not OpenAI fields)."""
    if content_type and content_type.lower().startswith("multipart/form-data"):
        fields = _form(raw, content_type)
    else:
        fields = parse_object(raw, content_type)
    hints = {k: fields.pop(k) for k in HINTS if k in fields}
    try:
        return VideoCreateRequest.model_validate(fields), hints
    except ValidationError as exc:
        message, param = describe_errors(exc.errors(include_url=False))
        raise InvalidRequest(message, param=param) from None


@router.post("/videos", response_model=Video)
async def create_video(request: Request, svc: ServicesDep) -> Video:
    raw = await request.body()
    body, hints = _body(raw, request.headers.get("content-type"))
    principal = principal_of(request)
    svc.gdpr.consents.require(principal)  # GDPR: the tenant's consent rule
    op, job_request = svc.videos.prepare(body, hints, principal)
    # A video is a `video` job, charged as one: its seconds booked (a 429: no video)
    job_id = submit_charged(svc, principal, OPERATION, op, job_request, len(raw),
                            principal.actor(client_ip(request)))
    return svc.videos.get(job_id, principal)


@router.get("/videos", response_model=VideoList)
async def list_videos(request: Request, svc: ServicesDep,
                      limit: Annotated[int, Query(ge=1, le=100)] = 20,
                      after: str | None = None,
                      order: Literal["asc", "desc"] = "desc") -> VideoList:
    return svc.videos.list(limit, after, order, principal_of(request))


@router.get("/videos/{video_id}", response_model=Video)
async def retrieve_video(video_id: str, request: Request, svc: ServicesDep,
                         response: Response) -> Video:
    video = svc.videos.get(video_id, principal_of(request))
    if video.status in ("queued", "in_progress"):
        response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return video


@router.delete("/videos/{video_id}", response_model=VideoDeleted)
async def delete_video(video_id: str, request: Request, svc: ServicesDep) -> VideoDeleted:
    return await svc.videos.delete(video_id, principal_of(request))


@router.get("/videos/{video_id}/content")
async def video_content(video_id: str, request: Request, svc: ServicesDep,
                        variant: str = "video") -> StreamingResponse:
    if variant != "video":
        raise InvalidRequest(f"variant {variant[:40]!r} is not made: rbee makes the MP4 only "
                             "(variant video)", param="variant")
    artifact, path = svc.videos.content(video_id, principal_of(request))
    return file_response(path, media_type=artifact.media_type, filename=artifact.filename,
                         missing=gone(artifact.id))


@router.post("/videos/{video_id}/remix")
async def remix_video(video_id: str) -> Response:
    raise InvalidRequest("remix is not supported: rbee's video pipelines make a video from a "
                         "prompt only; create a new video with the changed prompt",
                         param="video_id")


@router.get("/artifacts/{artifact_id}")
async def download_artifact(artifact_id: str, request: Request,
                            svc: ServicesDep) -> StreamingResponse:
    artifact, path = open_owned(svc.artifacts, svc.jobs, principal_of(request), artifact_id)
    return file_response(path, media_type=artifact.media_type, filename=artifact.filename,
                         missing=gone(artifact.id))
