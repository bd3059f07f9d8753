"""A transcript in each of OpenAI's formats: json, text, srt, vtt, verbose_json, and the
transcript.text.delta / transcript.text.done events of a stream."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rbee.api.transcription import Task, TranscriptFormat
from rbee.api.transcripts import text_of, timed_text, usage
from rbee.engines.base import Segment

# verbose_json names the language as OpenAI does ("english"); codes not listed stay codes.
LANGUAGE_NAMES = {"en": "english", "fr": "french", "de": "german", "es": "spanish",
                  "it": "italian", "pt": "portuguese", "nl": "dutch", "ru": "russian",
                  "zh": "chinese", "ja": "japanese", "ko": "korean", "pl": "polish"}


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
    body["usage"] = usage(duration)  # a translation's too (the queen charges by it)
    return body


def render(fmt: TranscriptFormat, segments: Sequence[Segment], *, task: Task, language: str,
           duration: float, words: bool) -> str:
    """The whole answer's body in `fmt`."""
    if fmt in ("text", "srt", "vtt"):
        return timed_text(fmt, segments)
    if fmt == "verbose_json":
        return json.dumps(verbose(segments, task=task, language=language, duration=duration,
                                  words=words), ensure_ascii=False)
    return json.dumps({"text": text_of(segments), "usage": usage(duration)},
                      ensure_ascii=False)


def delta_event(segment: Segment, first: bool) -> dict[str, Any]:
    """One segment's text as an event; the deltas joined are the done event's text."""
    text = segment.text.lstrip() if first else segment.text
    return {"type": "transcript.text.delta", "delta": text, "logprobs": None}


def done_event(segments: Sequence[Segment], duration: float) -> dict[str, Any]:
    """The stream's last event, with its `usage` (as OpenAI's has): what the queen charges."""
    return {"type": "transcript.text.done", "text": text_of(segments), "logprobs": None,
            "usage": usage(duration)}
