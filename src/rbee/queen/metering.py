"""What a request may use (before) and what it used (after), read cheaply on the queen.

Before: the prompt's tokens are estimated as the request body's bytes / 2, with no
tokenizer (the queen never loads one). English averages about 4 bytes per token, so this is
about twice the usual count, and the body's JSON (keys, quotes, roles) stands in for the chat
template's tokens; the engine's own count replaces it at completion. Output is bounded by
max_tokens (or max_completion_tokens) per choice, else by the engines' default.

After: the engines' `usage`, found from the end of a whole answer (it is the last field, and
an embedding answer's vectors are not parsed), or in a stream's last frame: the queen asks
the worker for it (`stream_options.include_usage`) and drops that frame again when the
client did not ask for it. A transcription's usage is the audio's seconds (in a json answer,
or a stream's `transcript.text.done`; see api.transcripts for the other formats).

The other modalities report no usage of their own: pictures are counted, a video's seconds
are those asked for, and speech is charged at an estimate from its text (Piper tells no
length; the estimate reads slower than any voice speaks, so it is never under the audio).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable

from rbee.api.cluster import WorkerInfo
from rbee.api.quotas import Prices
from rbee.queen.calls import Call, Watch
from rbee.queen.quotas import Demand, Used
from rbee.queen.relay import Pipe
from rbee.queen.transport import Upstream

DEFAULT_OUTPUT_TOKENS = 256  # = engines.base.DEFAULT_MAX_TOKENS (not imported: engine side)
SPEECH_CHARS_PER_SECOND = 10.0  # slower than any voice speaks: speech's worst case length
# Compressed speech at the lowest bitrate codecs use (opus at 4 kb/s): an upload of N bytes
# holds at most N / 500 seconds, the transcription's worst case before it is decoded.
MIN_AUDIO_BYTES_PER_SECOND = 500
_COUNT = re.compile(rb'"(prompt_tokens|completion_tokens|seconds)"\s*:\s*([0-9.]+)')
_USAGE_FRAME = re.compile(rb'"choices":\s*\[\],\s*"usage":\s*\{')
_TRANSCRIPT_DONE = re.compile(rb'"type":\s*"transcript\.text\.done"')


def prompt_tokens(raw_len: int) -> int:
    return raw_len // 2 + 1


def text_demand(raw_len: int, max_tokens: int | None, choices: int | None,
                price: Callable[[int, int, float], float]) -> Demand:
    prompt = prompt_tokens(raw_len)
    output = (max_tokens or DEFAULT_OUTPUT_TOKENS) * (choices or 1)
    return Demand(tokens=prompt + output, cost=price(prompt, output, 0.0))


def demand_for(used: Used, prices: Prices | None) -> Demand:
    """A request whose worst case is known in units (seconds, pictures), booked as such."""
    return Demand(tokens=used.tokens, cost=used.cost(prices))


def speech_use(text: str) -> Used:
    return Used(audio_seconds=round(len(text) / SPEECH_CHARS_PER_SECOND, 3))


def audio_worst_case(upload_bytes: int, max_seconds: float) -> Used:
    return Used(audio_seconds=min(max_seconds, upload_bytes / MIN_AUDIO_BYTES_PER_SECOND))


def video_use(seconds: int | str | float) -> Used:
    return Used(video_seconds=float(seconds))


def used_in(body: bytes) -> Used | None:
    """The `usage` of a whole JSON answer (None when it has none)."""
    at = body.rfind(b'"usage"')
    if at < 0:
        return None
    counts = {k.decode(): float(v) for k, v in _COUNT.findall(body, at)}
    if not counts:
        return None
    return Used(prompt_tokens=int(counts.get("prompt_tokens", 0)),
                completion_tokens=int(counts.get("completion_tokens", 0)),
                audio_seconds=counts.get("seconds", 0.0))


def with_usage(raw: bytes) -> bytes:
    """A streamed chat/completion request that also asks the worker for its usage."""
    body = json.loads(raw)
    options = body.get("stream_options")
    body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                              "include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


def metered_pipe(inner: Pipe, settle: Callable[[Used | None], None], forward_usage: bool,
                 reported: Used | None = None) -> Pipe:
    """`inner`'s stream with its usage frame read (and dropped unless `forward_usage`);
    `settle` is called once when the stream ends, however it ends: with the engine's count,
    else `reported` (a stream whose engine counts nothing: pictures), else None."""

    async def pipe(worker: WorkerInfo, call: Call, upstream: Upstream, watch: Watch,
                   finish: Callable[[], None]) -> AsyncIterator[bytes]:
        reader = _UsageReader(forward_usage)
        settled = False

        def done() -> None:
            nonlocal settled
            if not settled:  # the inner pipe's own end calls this too
                settled = True
                settle(reader.used or reported)
            finish()

        try:
            async for chunk in inner(worker, call, upstream, watch, done):
                out = reader.feed(chunk)
                if out:
                    yield out
            if reader.buffer:
                yield reader.buffer
        finally:
            done()

    return pipe


class _UsageReader:
    """Whole SSE frames out of a byte stream, the usage frame noted (and dropped unless
    forwarded)."""

    def __init__(self, forward_usage: bool) -> None:
        self.forward_usage = forward_usage
        self.used: Used | None = None
        self.buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        frames, sep, self.buffer = (self.buffer + chunk).rpartition(b"\n\n")
        if not sep:
            self.buffer = frames + self.buffer
            return b""
        out = []
        for frame in frames.split(b"\n\n"):
            if _USAGE_FRAME.search(frame):
                self.used = used_in(frame) or self.used
                if not self.forward_usage:
                    continue
            elif _TRANSCRIPT_DONE.search(frame):  # the client's own last event
                self.used = used_in(frame) or self.used
            out.append(frame + b"\n\n")
        return b"".join(out)
