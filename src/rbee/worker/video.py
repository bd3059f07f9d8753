"""Videos on the worker: made with per-step progress over SSE, then fetched once.

Why two calls: the MP4 is binary and can be large; putting it in the SSE stream would mean
base64 (a third bigger) through every hop. So `POST /v1/videos/generations` streams one
`video.progress` frame per denoising step and ends with a `video.file` frame naming the MP4
the worker now holds; the queen then fetches it once with `POST /v1/videos/files` (a POST
because the queen's worker transport is POST-only, and a body keeps the id out of logs),
which streams the file from disk and deletes it once sent. A file nobody fetches (the queen
died between the two calls) is deleted after `KEEP_SECONDS`, and all of them when the worker
stops.

A hang-up during generation closes the engine's iterator: the pipeline stops at the end of
its current step and the partial file is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from rbee.api import sse
from rbee.api.videos import MP4, VideoFileRequest, VideoGeneration
from rbee.core.errors import DeadlineExceeded, EngineError, NotFound, RbeeError
from rbee.engines.base import VideoSpec, VideoStep
from rbee.web.body import parse_body
from rbee.web.streaming import DisconnectAwareStream
from rbee.worker.runtime import Runtime

KEEP_SECONDS = 600.0


class VideoFileNotFound(NotFound):
    code = "video_file_not_found"


class VideoFiles:
    """The finished MP4s this worker holds until the queen fetches them."""

    def __init__(self) -> None:
        self._dir: Path | None = None

    def new(self) -> tuple[str, Path]:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="rbee-videos-"))
        self._sweep()
        file_id = f"vid_{uuid.uuid4().hex}"
        return file_id, self._dir / f"{file_id}.mp4"

    def path(self, file_id: str) -> Path:
        path = self._dir / f"{file_id}.mp4" if self._dir is not None else None
        if path is None or not path.is_file():
            raise VideoFileNotFound(f"no finished video {file_id!r} on this worker",
                                    param="file")
        return path

    def _sweep(self) -> None:
        assert self._dir is not None
        cutoff = time.time() - KEEP_SECONDS
        for path in self._dir.glob("*.mp4"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


async def generate(runtime: Runtime, files: VideoFiles, body: VideoGeneration,
                   until: float | None) -> Response:
    """The SSE answer; the first step is awaited before the headers go out, so a worker that
    cannot make videos (not ready, failing) answers with a status the queen can act on."""
    runtime.video_maker()  # another kind of model: a 400 saying so
    runtime.require_ready()
    file_id, out = files.new()
    spec = VideoSpec(prompt=body.prompt, width=body.width, height=body.height,
                     frames=body.frames, fps=body.fps, steps=body.steps, out=str(out),
                     seed=body.seed, negative_prompt=body.negative_prompt)
    steps = runtime.make_video(spec)
    try:
        async with asyncio.timeout_at(until):  # None: no deadline
            first = await anext(steps, None)
    except TimeoutError:
        await _discard(steps, out)
        raise DeadlineExceeded("the request's deadline passed while making the video") from None
    except BaseException:
        await _discard(steps, out)
        raise
    return DisconnectAwareStream(_frames(first, steps, file_id, out, until))


async def _frames(first: VideoStep | None, steps: AsyncIterator[VideoStep], file_id: str,
                  out: Path, until: float | None) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    whole = False
    try:
        try:
            step = first
            while step is not None:
                yield sse.data_frame({"object": "video.progress", "step": step.step,
                                      "steps": step.steps})
                if until is not None and loop.time() > until:
                    raise DeadlineExceeded("the request's deadline passed while making the "
                                           "video")
                step = await anext(steps, None)
            size = _size(out)
            if size is None:
                raise EngineError("the engine ended without writing the video")
        except RbeeError as exc:  # headers are out: the error is a frame
            yield sse.data_frame(exc.to_envelope())
            yield sse.DONE
            return
        whole = True
        yield sse.data_frame({"object": "video.file", "file": file_id, "bytes": size,
                              "media_type": MP4})
        yield sse.DONE
    finally:
        if not whole:
            await _discard(steps, out)


async def _discard(steps: AsyncIterator[VideoStep], out: Path) -> None:
    await steps.aclose()  # type: ignore[attr-defined]  # stops the engine within a step
    _remove(out)


def _size(path: Path) -> int | None:
    """The finished file's size (a stat: cheap enough for the loop), None if there is none."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def routes(runtime: Runtime, files: VideoFiles, auth: Callable[[Request], None],
           deadline: Callable[[Request], float | None]) -> list[Route]:
    """The worker's two video routes (see the module's docstring)."""
    async def make_video(request: Request) -> Response:
        auth(request)
        body = await parse_body(request, VideoGeneration)
        return await generate(runtime, files, body, deadline(request))

    async def video_file(request: Request) -> Response:
        auth(request)
        body = await parse_body(request, VideoFileRequest)
        return fetch(files, body.file)

    return [Route("/v1/videos/generations", make_video, methods=["POST"]),
            Route("/v1/videos/files", video_file, methods=["POST"])]


def fetch(files: VideoFiles, file_id: str) -> Response:
    """The MP4, streamed from disk; deleted once sent (the queen fetches each once)."""
    path = files.path(file_id)
    return FileResponse(path, media_type=MP4,
                        background=BackgroundTask(path.unlink, missing_ok=True))
