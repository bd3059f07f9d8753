"""A deterministic speech engine for tests: a sine tone per word, sentence by sentence.

Each word is a tone of `WORD_SECONDS` (divided by the speed) whose pitch is a hash of the word,
followed by a short silence; each sentence is one chunk. Its rate (16 kHz) is not OpenAI's pcm
rate, so the worker's resampling is exercised too.

Two test seams: `sentence_seconds` (a pause before each sentence, as a real model takes) and
`gate`, a file whose existence the last sentence waits for. A test that has read audio while
the gate was shut proves the first bytes left before the last sentence was made: by order,
not by timing.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from rbee.core.errors import EngineError
from rbee.engines.base import ProgressFn

RATE = 16_000
WORD_SECONDS = 0.1
GAP_SECONDS = 0.02
VOICES = ("bee", "drone")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_GATE_POLL = 0.01


def sentences(text: str) -> list[str]:
    """The text's sentences (split after . ! or ? and whitespace); blank ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def tone(word: str, voice: str, speed: float) -> bytes:
    """One word's samples: a sine at a pitch from the word (and voice), then a silence."""
    digest = hashlib.blake2b(f"{voice}:{word.lower()}".encode(), digest_size=2).digest()
    pitch = 200.0 + int.from_bytes(digest, "little") % 600
    n = round(RATE * WORD_SECONDS / speed)
    samples = array("h", (round(12_000 * math.sin(2 * math.pi * pitch * i / RATE))
                          for i in range(n)))
    samples.extend([0] * round(RATE * GAP_SECONDS / speed))
    return samples.tobytes()  # native order: little-endian on every platform rbee runs on


class FakeSpeaker:
    name = "fake"
    kind: Literal["speech"] = "speech"
    sample_rate: int = RATE
    voices: tuple[str, ...] = VOICES

    def __init__(self, *, load_seconds: float = 0.0, sentence_seconds: float = 0.0,
                 gate: str = "", slots: int = 1) -> None:
        self.slots = slots
        self._load_seconds = load_seconds
        self._sentence_seconds = sentence_seconds
        self._gate = Path(gate) if gate else None
        self.spoken: list[str] = []  # sentences made, in order (tests look)

    def load(self, progress: ProgressFn) -> None:
        progress(0.0, "loading voice")
        time.sleep(self._load_seconds)
        progress(1.0, "ready")

    def speak(self, text: str, voice: str, speed: float,
              cancel: threading.Event) -> Iterator[bytes]:
        if voice not in self.voices:
            raise EngineError(f"fake speech has no voice {voice!r}")
        parts = sentences(text)
        for i, sentence in enumerate(parts):
            if cancel.is_set():
                return
            if i == len(parts) - 1 and i > 0:
                self._wait_for_gate(cancel)
            time.sleep(self._sentence_seconds)
            self.spoken.append(sentence)
            yield b"".join(tone(w, voice, speed) for w in sentence.split())

    def _wait_for_gate(self, cancel: threading.Event) -> None:
        while self._gate is not None and not self._gate.exists() and not cancel.is_set():
            cancel.wait(_GATE_POLL)

    def close(self) -> None:
        return None
