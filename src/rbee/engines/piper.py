"""Piper text-to-speech (piper-tts, with its own espeak-ng phonemizer): one voice per worker.

Piper phonemizes the whole text, then synthesises one sentence at a time; each sentence's
samples are yielded as soon as they exist. OpenAI's `speed` (2.0 = twice as fast) is the
inverse of Piper's `length_scale` (2.0 = twice as long), relative to the voice's own.
onnxruntime's CPU provider only: a GPU would hold memory for a model that runs in real time
on one core.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from rbee.core.errors import EngineError
from rbee.engines.base import ProgressFn


class PiperSpeaker:
    name = "piper"
    kind: Literal["speech"] = "speech"

    def __init__(self, model_path: str, *, threads: int | None = None, slots: int = 1) -> None:
        self.slots = slots
        self._model_path = model_path
        self._threads = threads  # onnxruntime's own choice (physical cores) is kept for now
        self._voice: Any = None
        self.sample_rate = 22_050
        # The voice's name: en_US-joe-medium.onnx speaks as "joe".
        stem = Path(model_path).name.removesuffix(".onnx")
        parts = stem.split("-")
        self.voices: tuple[str, ...] = (parts[1] if len(parts) == 3 else stem,)

    def load(self, progress: ProgressFn) -> None:
        progress(0.0, "loading voice")
        if not Path(self._model_path).is_file():
            raise EngineError(f"no Piper voice at {self._model_path}")
        try:
            from piper import PiperVoice
        except ImportError as exc:
            raise EngineError("piper-tts is not installed: pip install 'rbee[speech]'"
                              ) from exc
        try:
            self._voice = PiperVoice.load(self._model_path)
        except Exception as exc:  # onnxruntime's and json's errors alike
            raise EngineError(f"Piper could not load {self._model_path}: {exc}") from exc
        self.sample_rate = int(self._voice.config.sample_rate)
        progress(1.0, "ready")

    def speak(self, text: str, voice: str, speed: float,
              cancel: threading.Event) -> Iterator[bytes]:
        from piper import SynthesisConfig

        scale = float(self._voice.config.length_scale or 1.0) / speed
        for chunk in self._voice.synthesize(text, SynthesisConfig(length_scale=scale)):
            if cancel.is_set():
                return
            yield bytes(chunk.audio_int16_bytes)

    def close(self) -> None:
        self._voice = None
