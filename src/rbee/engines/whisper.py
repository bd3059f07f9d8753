"""faster-whisper (CTranslate2) speech-to-text: one Whisper model per worker.

The model is a CTranslate2 folder (model.bin, config.json, tokenizer.json); `model_path` may
name the folder or its model.bin (the catalog's built-in and `file:` refs name the file).
On a CPU the weights run as int8 (Whisper tiny.en: 3.2 s of speech in 0.4 s); on a GPU
(`cuda:N`) as float16. faster-whisper decodes segment by segment, lazily: each segment is
yielded as soon as it exists, and `cancel` is checked between segments.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from rbee.core.errors import EngineError
from rbee.engines.base import ProgressFn, Segment, TranscriptionOptions, Word

# OpenAI's temperature 0 means "let the model raise it when decoding fails"; Whisper's own
# fallback ladder does exactly that.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def model_folder(model_path: str) -> Path:
    path = Path(model_path)
    return path.parent if path.name == "model.bin" else path


def device_args(device: str) -> tuple[str, int, str]:
    """(device, index, compute type) for CTranslate2 from rbee's device string."""
    if device.startswith("cuda"):
        _, _, index = device.partition(":")
        return "cuda", int(index or 0), "float16"
    if device == "cpu":
        return "cpu", 0, "int8"
    raise EngineError(f"faster-whisper runs on cpu or cuda:N, not {device!r}")


class WhisperTranscriber:
    name = "whisper"
    kind: Literal["transcription"] = "transcription"

    def __init__(self, model_path: str, *, device: str = "cpu", threads: int | None = None,
                 slots: int = 1) -> None:
        self.slots = slots
        self._folder = model_folder(model_path)
        self._device = device
        self._threads = threads
        self._model: Any = None
        self.languages: tuple[str, ...] = ("en",)

    def load(self, progress: ProgressFn) -> None:
        progress(0.0, "loading model")
        if not (self._folder / "model.bin").is_file():
            raise EngineError(f"no CTranslate2 Whisper model (model.bin) in {self._folder}")
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise EngineError("faster-whisper is not installed: pip install "
                              "'rbee[transcription]'") from exc
        device, index, compute = device_args(self._device)
        try:
            # num_workers: CTranslate2 runs that many transcriptions at once, one per slot.
            self._model = WhisperModel(str(self._folder), device=device, device_index=index,
                                       compute_type=compute, cpu_threads=self._threads or 0,
                                       num_workers=self.slots, local_files_only=True)
        except Exception as exc:  # CTranslate2's RuntimeError, json's ValueError alike
            raise EngineError(f"faster-whisper could not load {self._folder}: {exc}") from exc
        self.languages = tuple(self._model.supported_languages)
        progress(1.0, "ready")

    def transcribe(self, samples: bytes, options: TranscriptionOptions,
                   cancel: threading.Event) -> Iterator[Segment]:
        import numpy as np

        audio = np.frombuffer(samples, dtype="<i2").astype(np.float32) / 32768.0
        temperature: float | tuple[float, ...] = (
            options.temperature if options.temperature > 0 else FALLBACK_TEMPERATURES)
        # A one-language model can only transcribe: its "translation" is the transcript.
        task = options.task if len(self.languages) > 1 else "transcribe"
        segments, info = self._model.transcribe(
            audio, language=options.language, task=task, initial_prompt=options.prompt,
            temperature=temperature, word_timestamps=options.words,
            vad_filter=options.vad)  # Silero VAD, bundled with faster-whisper (offline)
        for s in segments:  # a generator: each segment is decoded when asked for
            if cancel.is_set():
                return
            yield Segment(
                id=int(s.id), seek=int(s.seek), start=float(s.start), end=float(s.end),
                text=str(s.text),
                tokens=tuple(int(t) for t in s.tokens),
                temperature=float(s.temperature or 0),
                avg_logprob=float(s.avg_logprob), compression_ratio=float(s.compression_ratio),
                no_speech_prob=float(s.no_speech_prob),
                words=tuple(Word(str(w.word), float(w.start), float(w.end))
                            for w in (s.words or ())),
                language=str(info.language))

    def close(self) -> None:
        self._model = None
