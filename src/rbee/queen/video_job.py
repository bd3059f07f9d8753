"""The `video` job: admission → a video worker (failover while no step was made) → the
worker's SSE progress, one job `progress` event per denoising step → the finished MP4 fetched
once from the worker, streamed into the artifact store → the result names the artifact (id,
URL, size), never the bytes.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from rbee.api.cluster import WorkerInfo
from rbee.api.jobs import VideoOp
from rbee.api.videos import MP4
from rbee.core.errors import WorkerUnavailable, WorkerUnreachable
from rbee.queen.dispatch import placement_hints
from rbee.queen.failover import with_failover
from rbee.queen.job_runner import JobRunner
from rbee.queen.jobs import JobContext
from rbee.queen.metering import video_use
from rbee.queen.videos import plan
from rbee.storage.artifacts import Artifact, ArtifactTooLarge


class VideoRunner(JobRunner):
    """The `video` job operation."""

    async def run(self, ctx: JobContext, op: VideoOp) -> dict[str, Any]:
        made = plan(op, self._settings)
        ref, body = made.ref, made.generation.model_dump(exclude_none=True)
        hints = placement_hints(op)
        started = time.perf_counter()

        async def attempt(worker: WorkerInfo) -> tuple[WorkerInfo, dict[str, Any]]:
            ctx.narrate("video", f"{ref.name} on {worker.id} ({worker.hive_id} "
                        f"{worker.device})")
            stepped = False
            try:
                async with contextlib.aclosing(self._relay.stream_events(
                        worker, body, path="/v1/videos/generations")) as frames:
                    async for frame in frames:
                        if frame.get("object") == "video.progress":
                            step, steps = int(frame["step"]), int(frame["steps"])
                            stepped = stepped or step > 0
                            ctx.progress("denoising", step / steps, step=step, steps=steps)
                        elif frame.get("object") == "video.file":
                            return worker, frame
            except WorkerUnreachable as exc:
                if stepped:  # work was under way on that worker: fail, don't start over
                    raise WorkerUnavailable(f"{exc.message} (mid-video)") from exc
                raise
            raise WorkerUnavailable(f"worker {worker.id} ended without a video")

        # The seconds asked for are the seconds made: charged once the MP4 is stored.
        async with self.slot(ctx, ref.name, op.priority, lambda: video_use(op.seconds)):
            worker, done = await with_failover(self._dispatcher, self._registry, ref, hints,
                                               ctx, attempt)
            made_at = time.perf_counter()
            artifact = await self._fetch(ctx, worker, done)
        end = time.perf_counter()
        g = made.generation
        return {"model": ref.name, "worker_id": worker.id, "artifact_id": artifact.id,
                "url": artifact.url, "bytes": artifact.bytes, "media_type": artifact.media_type,
                "width": g.width, "height": g.height, "frames": g.frames, "fps": g.fps,
                "steps": g.steps, "seconds": op.seconds, "size": op.size,
                "timings": {"make_ms": round((made_at - started) * 1000, 2),
                            "fetch_ms": round((end - made_at) * 1000, 2),
                            "total_ms": round((end - started) * 1000, 2)}}

    async def _fetch(self, ctx: JobContext, worker: WorkerInfo,
                     done: dict[str, Any]) -> Artifact:
        ctx.narrate("video", f"fetching the MP4 ({done.get('bytes')} bytes) from {worker.id}")
        chunks = self._relay.stream_bytes(worker, "/v1/videos/files", {"file": done["file"]})
        try:
            async with contextlib.aclosing(chunks):
                artifact = await self._artifacts.put(
                    chunks, media_type=MP4, owner=ctx.job_id, filename=f"{ctx.job_id}.mp4",
                    max_bytes=self._settings.video_max_bytes)
        except ArtifactTooLarge as exc:
            raise WorkerUnavailable(f"the video is larger than this queen stores "
                                    f"(RBEE_QUEEN_VIDEO_MAX_BYTES): {exc}") from exc
        if artifact.bytes != done.get("bytes"):  # a transfer cut short must not look whole
            self._artifacts.delete(artifact.id)
            raise WorkerUnavailable(f"worker {worker.id} sent {artifact.bytes} of "
                                    f"{done.get('bytes')} bytes of the video")
        return artifact
