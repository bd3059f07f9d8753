"""A transcription or translation request on the worker: the form's file to disk, decoded,
then transcribed segment by segment.

The upload is the queen's form, re-sent (or a direct client's): parsed as it streams
(`web.uploads`), bounded by the worker's `max_upload_bytes`, and its file removed once
decoded, however the request ends. The audio's length is checked here, while decoding:
only decoding knows it (the queen sends its `max_audio_seconds` as a field).
A streamed answer's first segment is made before the response starts, so a worker that
cannot transcribe still answers with a status the queen can act on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from rbee.api import sse
from rbee.api.transcription import (
    MAX_AUDIO_FIELD,
    TRANSCRIPT_MEDIA_TYPES,
    Task,
    TranscriptionRequest,
    from_form,
)
from rbee.core.errors import DeadlineExceeded, InvalidRequest, RbeeError
from rbee.engines.base import Segment, Transcriber, TranscriptionOptions
from rbee.web.streaming import DisconnectAwareStream, unless_disconnected
from rbee.web.uploads import receive_form
from rbee.worker import transcripts
from rbee.worker.decode import BYTES_PER_SECOND, decode
from rbee.worker.runtime import Runtime

DEFAULT_MAX_AUDIO_SECONDS = 1800.0


@dataclass(frozen=True)
class Limits:
    upload_dir: Path
    max_upload_bytes: int
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS


def check_language(transcriber: Transcriber, language: str | None, model: str) -> None:
    if language is not None and language not in transcriber.languages:
        raise InvalidRequest(f"{model} does not read language {language!r}; it reads "
                             f"{', '.join(transcriber.languages[:20])}", param="language")


def max_seconds(fields: dict[str, list[str]], limits: Limits) -> float:
    """The worker's own limit, or the sender's (the queen's) where that is less."""
    raw = fields.pop(MAX_AUDIO_FIELD, None)
    if raw is None:
        return limits.max_audio_seconds
    try:
        asked = float(raw[-1])
    except ValueError:
        raise InvalidRequest(f"{MAX_AUDIO_FIELD} must be a number of seconds",
                             param=MAX_AUDIO_FIELD) from None
    if not asked > 0:
        raise InvalidRequest(f"{MAX_AUDIO_FIELD} must be a positive number of seconds",
                             param=MAX_AUDIO_FIELD)
    return min(asked, limits.max_audio_seconds)


async def _samples(request: Request, limits: Limits, task: Task, transcriber: Transcriber,
                   model: str, until: float | None) -> tuple[TranscriptionRequest, bytes]:
    form = await receive_form(request, directory=limits.upload_dir,
                              max_file_bytes=limits.max_upload_bytes)
    cancel = threading.Event()
    try:
        seconds = max_seconds(form.fields, limits)
        body = from_form(form.fields, task)
        check_language(transcriber, body.language, model)
        if form.file is None:
            raise InvalidRequest("the form has no file: send the audio as its file field",
                                 param="file")
        if form.file.size == 0:
            raise InvalidRequest("the file is empty", param="file")
        path = form.file.path
        async with asyncio.timeout_at(until):  # None: no deadline
            samples = await asyncio.to_thread(decode, path, max_seconds=seconds, cancel=cancel)
        return body, samples
    except TimeoutError:
        raise DeadlineExceeded("the request's deadline passed while decoding") from None
    finally:
        cancel.set()  # a decode left behind (deadline, hang-up) stops at its next frame
        if form.file is not None:
            form.file.remove()


async def transcribe(runtime: Runtime, request: Request, model: str, task: Task,
                     limits: Limits, until: float | None) -> Response:
    transcriber = runtime.transcriber()  # another kind of model: a 400 saying so
    runtime.require_ready()
    body, samples = await _samples(request, limits, task, transcriber, model, until)
    options = TranscriptionOptions(task=task, language=body.language, prompt=body.prompt,
                                   temperature=body.temperature, words=body.words(),
                                   vad=body.chunking_strategy == "auto")
    segments = runtime.transcribe(samples, options)
    duration = len(samples) / BYTES_PER_SECOND
    if body.stream:
        return await _stream(segments, until, duration)

    async def whole() -> Response:
        made = [s async for s in _within(segments, until)]
        language = next((s.language for s in made if s.language), body.language or "")
        text = transcripts.render(body.transcript_format(), made, task=task,
                                  language=language or transcriber.languages[0],
                                  duration=duration, words=body.words())
        return Response(text, media_type=TRANSCRIPT_MEDIA_TYPES[body.transcript_format()])

    return await unless_disconnected(request, whole())


async def _within(segments: AsyncIterator[Segment], until: float | None
                  ) -> AsyncIterator[Segment]:
    """The segments until loop time `until`; then the engine stops (closing `segments`)."""
    loop = asyncio.get_running_loop()
    try:
        async for segment in segments:
            if until is not None and loop.time() > until:
                raise DeadlineExceeded("the request's deadline passed while transcribing")
            yield segment
    finally:
        await segments.aclose()  # type: ignore[attr-defined]


async def _stream(segments: AsyncIterator[Segment], until: float | None,
                  duration: float) -> Response:
    items = _within(segments, until)
    try:
        async with asyncio.timeout_at(until):
            first = await anext(items, None)
    except TimeoutError:
        await items.aclose()  # type: ignore[attr-defined]
        raise DeadlineExceeded("the request's deadline passed while transcribing") from None
    except BaseException:
        await items.aclose()  # type: ignore[attr-defined]
        raise
    return DisconnectAwareStream(_events(first, items, duration))


async def _events(first: Segment | None, rest: AsyncIterator[Segment],
                  duration: float) -> AsyncIterator[bytes]:
    made: list[Segment] = []
    try:
        if first is not None:
            made.append(first)
            yield sse.data_frame(transcripts.delta_event(first, first=True))
            async for segment in rest:
                made.append(segment)
                yield sse.data_frame(transcripts.delta_event(segment, first=False))
        yield sse.data_frame(transcripts.done_event(made, duration))
        yield sse.DONE
    except RbeeError as exc:  # headers are out: the error is a frame, as chat's are
        yield sse.data_frame(exc.to_envelope())
        yield sse.DONE
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
