"""A speech request on the worker: the voice checked, then audio streamed sentence by
sentence in the format asked for.

The first sentence is made before the response starts, so a worker that cannot speak (not
ready, the engine failing) still answers with a status the queen can act on; later failures
cut the stream (the client sees a broken transfer, never a short file that looks whole).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.responses import Response

from rbee.api.speech import MEDIA_TYPES, SpeechRequest
from rbee.core.errors import DeadlineExceeded, InvalidRequest
from rbee.engines.base import Speaker
from rbee.web.streaming import DisconnectAwareStream
from rbee.worker.audio import Encoder, encoder, resample
from rbee.worker.runtime import Runtime

# OpenAI's voice names: each means the model's default voice, so code written for OpenAI
# runs unchanged. The model's own voice names are always accepted too.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                 "shimmer", "verse", "marin", "cedar")


def voice_of(speaker: Speaker, name: str, model: str) -> str:
    """The engine's voice for `name`; a 400 naming voice, listing the voices, otherwise."""
    if name in speaker.voices:
        return name
    if name.lower() in OPENAI_VOICES:
        return speaker.voices[0]
    raise InvalidRequest(f"voice {name[:64]!r} is not a voice of {model}; its voices: "
                         f"{', '.join(speaker.voices)} (OpenAI's names, "
                         f"{', '.join(OPENAI_VOICES)}, mean {speaker.voices[0]})",
                         param="voice")


async def _audio(first: bytes, rest: AsyncIterator[bytes], out: Encoder, rate: int,
                 until: float | None) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    try:
        if head := out.add(resample(first, rate)):
            yield head
        async for samples in rest:
            if until is not None and loop.time() > until:
                raise DeadlineExceeded("the request's deadline passed while speaking")
            if data := out.add(resample(samples, rate)):
                yield data
        if tail := out.finish():
            yield tail
    finally:
        await rest.aclose()  # type: ignore[attr-defined]  # stops the engine


async def speak(runtime: Runtime, body: SpeechRequest, model: str,
                until: float | None) -> Response:
    speaker = runtime.speaker()  # another kind of model: a 400 saying so
    runtime.require_ready()
    voice = voice_of(speaker, body.voice, model)
    out = encoder(body.audio_format())
    chunks = runtime.speak(body.input, voice, body.speed)
    try:
        async with asyncio.timeout_at(until):  # None: no deadline
            first = await anext(chunks, b"")
    except TimeoutError:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise DeadlineExceeded("the request's deadline passed while speaking") from None
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise
    stream = _audio(first, chunks, out, speaker.sample_rate, until)
    return DisconnectAwareStream(stream, media_type=MEDIA_TYPES[body.audio_format()])

