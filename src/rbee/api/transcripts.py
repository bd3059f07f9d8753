"""Transcript formats that need only timed text (text, srt, vtt), written by either side.

The worker writes them from its engine's segments. The queen writes them too: it charges a
transcription by the audio's seconds, which only decoding tells, and only json and
verbose_json answers carry them (`usage`). So when a client asks for text, srt or vtt, the
queen asks the worker for json or verbose_json (`worker_format`), settles the charge from
it, and writes the client's format from it (`client_answer`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rbee.api.transcription import TranscriptFormat


class Timed(Protocol):
    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class Cue:
    """A segment as verbose_json gives it."""

    start: float
    end: float
    text: str


def text_of(segments: Sequence[Timed]) -> str:
    return "".join(s.text for s in segments).strip()


def clock(seconds: float, decimal: str) -> str:
    """00:01:02,345 (srt) or 00:01:02.345 (vtt)."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def srt(segments: Sequence[Timed]) -> str:
    return "".join(f"{i}\n{clock(s.start, ',')} --> {clock(s.end, ',')}\n{s.text.strip()}\n\n"
                   for i, s in enumerate(segments, 1))


def vtt(segments: Sequence[Timed]) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{clock(s.start, '.')} --> {clock(s.end, '.')}\n{s.text.strip()}\n\n"
        for s in segments)


def usage(duration: float) -> dict[str, Any]:
    """OpenAI's `usage` of a transcription: the audio's seconds, rounded up."""
    return {"type": "duration", "seconds": math.ceil(duration)}


def timed_text(fmt: TranscriptFormat, segments: Sequence[Timed]) -> str:
    """A text, srt or vtt answer's body."""
    if fmt == "srt":
        return srt(segments)
    if fmt == "vtt":
        return vtt(segments)
    return text_of(segments) + "\n"


def worker_format(fmt: TranscriptFormat) -> TranscriptFormat:
    """What the queen asks a worker for, so that the answer carries the audio's length."""
    if fmt in ("srt", "vtt"):
        return "verbose_json"  # the segments' times
    return "json" if fmt == "text" else fmt


def client_answer(raw: bytes, fmt: TranscriptFormat) -> bytes:
    """The worker's json or verbose_json answer (`worker_format`) as the client's `fmt`."""
    if worker_format(fmt) == fmt:
        return raw
    body = json.loads(raw)
    if fmt == "text":
        return (str(body.get("text", "")).strip() + "\n").encode()
    cues = [Cue(float(s["start"]), float(s["end"]), str(s["text"]))
            for s in body.get("segments") or ()]
    return timed_text(fmt, cues).encode()
