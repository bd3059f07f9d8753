"""A deterministic transcription engine for tests: text from the audio's loudness.

Each whole or partial second of audio becomes one segment, " Second N is loud." (or quiet,
or silent, by its RMS level), with one word timestamp per word spread evenly over it. So a
test knows the transcript from the audio it made: its length, and where it is loud.
It reads English and French (so a `language` it can't read is testable) and "translates"
by prefixing the text with "(from fr)" when the language is not English.

A test seam: `segment_seconds`, a pause before each segment (as a real model takes), checked
against `cancel` so a stopped request ends mid-file.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Iterator
from typing import Literal

from rbee.engines.base import (
    TRANSCRIPTION_RATE,
    ProgressFn,
    Segment,
    TranscriptionOptions,
    Word,
)

LOUD = 0.1  # RMS as a fraction of full scale
QUIET = 0.001


def level(samples: array[int]) -> str:
    if not samples:
        return "silent"
    rms = math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768
    return "loud" if rms >= LOUD else "quiet" if rms >= QUIET else "silent"


def transcript(samples: bytes) -> list[tuple[float, float, str]]:
    """(start, end, text) of each second of `samples` (int16 mono at 16 kHz)."""
    pcm = array("h")
    pcm.frombytes(samples[:len(samples) - len(samples) % 2])
    out = []
    for n, at in enumerate(range(0, len(pcm), TRANSCRIPTION_RATE)):
        window = pcm[at:at + TRANSCRIPTION_RATE]
        start = at / TRANSCRIPTION_RATE
        out.append((start, start + len(window) / TRANSCRIPTION_RATE,
                    f" Second {n + 1} is {level(window)}."))
    return out


class FakeTranscriber:
    name = "fake"
    kind: Literal["transcription"] = "transcription"
    languages: tuple[str, ...] = ("en", "fr")

    def __init__(self, *, load_seconds: float = 0.0, segment_seconds: float = 0.0,
                 slots: int = 1) -> None:
        self.slots = slots
        self._load_seconds = load_seconds
        self._segment_seconds = segment_seconds
        self.seen: list[TranscriptionOptions] = []  # each call's options (tests look)

    def load(self, progress: ProgressFn) -> None:
        progress(0.0, "loading model")
        threading.Event().wait(self._load_seconds)
        progress(1.0, "ready")

    def transcribe(self, samples: bytes, options: TranscriptionOptions,
                   cancel: threading.Event) -> Iterator[Segment]:
        self.seen.append(options)
        prefix = (" (from fr)" if options.task == "translate" and options.language == "fr"
                  else "")
        for i, (start, end, text) in enumerate(transcript(samples)):
            if cancel.wait(self._segment_seconds):  # also a plain check when 0
                return
            text = prefix + text
            words = text.split()
            step = (end - start) / len(words)
            yield Segment(id=i, start=start, end=end, text=text,
                          temperature=options.temperature, language=options.language or "en",
                          words=tuple(Word(" " + w, start + k * step, start + (k + 1) * step)
                                      for k, w in enumerate(words) if options.words))

    def close(self) -> None:
        return None
