"""A transcript in each of OpenAI's formats: json, text, srt, vtt, verbose_json, and the
transcript.text.delta / transcript.text.done events of a stream."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from rbee.api.transcription import Task, TranscriptFormat
from rbee.engines.base import Segment

# verbose_json names the language as OpenAI does ("english"); codes not listed stay codes.
LANGUAGE_NAMES = {"en": "english", "fr": "french", "de": "german", "es": "spanish",
                  "it": "italian", "pt": "portuguese", "nl": "dutch", "ru": "russian",
                  "zh": "chinese", "ja": "japanese", "ko": "korean", "pl": "polish"}


def text_of(segments: Sequence[Segment]) -> str:
    return "".join(s.text for s in segments).strip()


def clock(seconds: float, decimal: str) -> str:
    """00:01:02,345 (srt) or 00:01:02.345 (vtt)."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def srt(segments: Sequence[Segment]) -> str:
    return "".join(f"{i}\n{clock(s.start, ',')} --> {clock(s.end, ',')}\n{s.text.strip()}\n\n"
                   for i, s in enumerate(segments, 1))


def vtt(segments: Sequence[Segment]) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{clock(s.start, '.')} --> {clock(s.end, '.')}\n{s.text.strip()}\n\n"
        for s in segments)


def usage(duration: float) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(duration)}


def verbose(segments: Sequence[Segment], *, task: Task, language: str, duration: float,
            words: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": "translate" if task == "translate" else "transcribe",
        "language": LANGUAGE_NAMES.get(language, language), "duration": round(duration, 3),
        "text": text_of(segments),
        "segments": [{"id": s.id, "seek": s.seek, "start": round(s.start, 3),
                      "end": round(s.end, 3), "text": s.text, "tokens": list(s.tokens),
                      "temperature": s.temperature, "avg_logprob": s.avg_logprob,
                      "compression_ratio": s.compression_ratio,
                      "no_speech_prob": s.no_speech_prob} for s in segments]}
    if words:
        body["words"] = [{"word": w.word.strip(), "start": round(w.start, 3),
                          "end": round(w.end, 3)} for s in segments for w in s.words]
    if task == "transcribe":
        body["usage"] = usage(duration)
    return body


def render(fmt: TranscriptFormat, segments: Sequence[Segment], *, task: Task, language: str,
           duration: float, words: bool) -> str:
    """The whole answer's body in `fmt`."""
    if fmt == "text":
        return text_of(segments) + "\n"
    if fmt == "srt":
        return srt(segments)
    if fmt == "vtt":
        return vtt(segments)
    if fmt == "verbose_json":
        return json.dumps(verbose(segments, task=task, language=language, duration=duration,
                                  words=words), ensure_ascii=False)
    body: dict[str, Any] = {"text": text_of(segments)}
    if task == "transcribe":
        body["usage"] = usage(duration)
    return json.dumps(body, ensure_ascii=False)


def delta_event(segment: Segment, first: bool) -> dict[str, Any]:
    """One segment's text as an event; the deltas joined are the done event's text."""
    text = segment.text.lstrip() if first else segment.text
    return {"type": "transcript.text.delta", "delta": text, "logprobs": None}


def done_event(segments: Sequence[Segment]) -> dict[str, Any]:
    return {"type": "transcript.text.done", "text": text_of(segments), "logprobs": None}
