"""Videos: OpenAI's Videos API over the job API. A video *is* a `video` job: its id is the
job's, its status and progress are the job's state and last `progress` event, cancelling or
deleting it is the job's, and its MP4 is an artifact the job owns (`storage/artifacts.py`).
The job itself is `queen/video_job.py`; `plan` (here) turns a request into the worker's,
within the queen's bounds, for both.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from rbee.api.jobs import JobSummary, VideoOp
from rbee.api.videos import (
    Video,
    VideoCreateRequest,
    VideoDeleted,
    VideoError,
    VideoGeneration,
    VideoList,
)
from rbee.core.clock import Clock
from rbee.core.errors import Conflict, InvalidRequest, NotFound
from rbee.models.catalog import ModelRef, parse_ref, require_kind
from rbee.queen.identity import Principal, operation_role
from rbee.queen.jobs import JobManager
from rbee.queen.settings import QueenSettings
from rbee.storage.artifacts import Artifact, ArtifactStore
from rbee.web.body import describe_errors

OPERATION = "video"
# The SDK's default model and OpenAI's own names: mean the queen's video model, so code
# written for OpenAI runs unchanged.
OPENAI_MODELS = ("sora-2", "sora-2-pro")


class VideoNotFound(NotFound):
    code = "video_not_found"


class VideoNotReady(Conflict):
    code = "video_not_ready"


@dataclass(frozen=True)
class Plan:
    ref: ModelRef
    generation: VideoGeneration


def plan(body: VideoCreateRequest, settings: QueenSettings) -> Plan:
    """The worker's request for `body` within the queen's bounds; a 400 naming the field."""
    name = body.model
    if not name or name.startswith(OPENAI_MODELS):
        if not settings.video_model:
            raise InvalidRequest(f"no video model is set: name one (a diffusers video "
                                 f"pipeline, file:/abs/folder or hf:org/repo) or set "
                                 f"RBEE_QUEEN_VIDEO_MODEL for {name or 'requests naming none'}",
                                 param="model")
        name = settings.video_model
    ref = require_kind(parse_ref(name), "video")
    width, height = body.dimensions()
    if width % 8 or height % 8:
        raise InvalidRequest(f"size {body.size}: width and height must be multiples of 8 "
                             "(the pipelines' latent scale)", param="size")
    if width * height > settings.video_max_pixels:
        raise InvalidRequest(f"size {body.size} is larger than this queen makes: at most "
                             f"{settings.video_max_pixels} pixels a frame", param="size")
    frames = int(body.seconds) * settings.video_fps
    if frames > settings.video_max_frames:
        most = settings.video_max_frames // settings.video_fps
        raise InvalidRequest(f"seconds {body.seconds} at {settings.video_fps} fps is {frames} "
                             f"frames; this queen makes at most {settings.video_max_frames} "
                             f"({most} s)", param="seconds")
    return Plan(ref, VideoGeneration(
        prompt=body.prompt, width=width, height=height, frames=frames, fps=settings.video_fps,
        steps=body.steps or settings.video_steps, seed=body.seed,
        negative_prompt=body.negative_prompt))


class Videos:
    """The Videos API's view of `video` jobs."""

    def __init__(self, jobs: JobManager, artifacts: ArtifactStore, settings: QueenSettings,
                 clock: Clock) -> None:
        self._jobs = jobs
        self._artifacts = artifacts
        self._settings = settings
        self._clock = clock

    def prepare(self, body: VideoCreateRequest, hints: dict[str, Any],
                principal: Principal) -> tuple[VideoOp, dict[str, Any]]:
        """The `video` job a create request stands for, within the caller's key's scope, and
        the request as the job history keeps it (the caller submits it: quotas first)."""
        plan(body, self._settings)  # a bad request is a 400 now, not a failed video later
        request = {"operation": OPERATION, **body.model_dump(exclude_none=True), **hints}
        try:
            op = VideoOp.model_validate(request)
        except ValidationError as exc:  # rbee's hints: placement, priority…
            message, param = describe_errors(exc.errors(include_url=False))
            raise InvalidRequest(message, param=param) from None
        principal.require(operation_role(OPERATION), "making videos")
        principal.check_priority(op.priority)
        principal.check_model(parse_ref(op.model or self._settings.video_model).name)
        if principal.tenant is not None:
            op = op.model_copy(update={"tenant": principal.tenant})
        return op, request

    def _summary(self, video_id: str, principal: Principal) -> JobSummary:
        """The video's job, when the caller's tenant may see it (else it does not exist)."""
        found = None
        with contextlib.suppress(NotFound):
            self._jobs.check_owner(video_id, principal.owns)
            found = self._jobs.summary(video_id)
        if found is None or found.operation != OPERATION:
            raise VideoNotFound(f"no video {video_id[:80]!r}", param="video_id")
        return found

    def get(self, video_id: str, principal: Principal) -> Video:
        return self._video(self._summary(video_id, principal))

    def _video(self, job: JobSummary) -> Video:
        req, result = job.request, job.result or {}
        status, progress, error = "queued", 0, None
        if job.state == "running":
            # queued (admission, a worker being placed or loaded) until its first step
            last = self._jobs.last_event(job.job_id, "progress")
            if last is not None:
                status = "in_progress"
                fraction = float(last.data.get("fraction", 0))
                progress = min(99, int(fraction * 100))  # 100 is for a finished video
        elif job.state == "done":
            status, progress = "completed", 100
        elif job.state in ("error", "cancelled"):
            status = "failed"
            last = self._jobs.last_event(job.job_id)
            code = str(last.data.get("code") or job.state) if last is not None else job.state
            error = VideoError(code=code, message=job.error or job.state)
        finished = int(job.finished_at) if job.finished_at is not None else None
        expires = None
        if status == "completed" and finished is not None and self._settings.artifact_retention:
            expires = int(finished + self._settings.artifact_retention)
        # the model as the client named it (OpenAI echoes it), else the one that made it
        return Video(id=job.job_id, model=str(req.get("model") or result.get("model") or
                                              self._settings.video_model),
                     status=status, progress=progress,
                     created_at=int(job.created_at), completed_at=finished,
                     expires_at=expires, prompt=req.get("prompt"),
                     seconds=str(req.get("seconds", "4")), size=str(req.get("size", "720x1280")),
                     error=error)

    def list(self, limit: int, after: str | None, order: str, principal: Principal
             ) -> VideoList:
        if after is not None:  # an unknown cursor is a 404 naming it, not an empty page
            self._summary(after, principal)
        tenant_id = None if principal.sees_all_tenants() else principal.tenant_id
        jobs = self._jobs.of_operation(OPERATION, limit + 1, after, order == "desc",
                                       tenant_id)
        page = [self._video(j) for j in jobs[:limit]]
        return VideoList(data=page, first_id=page[0].id if page else None,
                         last_id=page[-1].id if page else None, has_more=len(jobs) > limit)

    async def delete(self, video_id: str, principal: Principal) -> VideoDeleted:
        self._summary(video_id, principal)
        if not await self._jobs.delete(video_id):  # cancels it first if it is being made
            raise Conflict(f"video {video_id} is still stopping; delete it again in a moment",
                           param="video_id")
        await asyncio.to_thread(self._artifacts.delete_owned, video_id)
        return VideoDeleted(id=video_id)

    def content(self, video_id: str, principal: Principal) -> tuple[Artifact, Any]:
        video = self.get(video_id, principal)
        if video.status != "completed":
            raise VideoNotReady(f"video {video_id} is {video.status}: its content exists once "
                                "it is completed", param="video_id")
        artifact_id = (self._summary(video_id, principal).result or {}).get("artifact_id", "")
        try:
            return self._artifacts.open(str(artifact_id))
        except NotFound:
            raise VideoNotFound(f"the content of video {video_id} has expired or was deleted",
                                param="video_id") from None
