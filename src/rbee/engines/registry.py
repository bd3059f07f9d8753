"""Engine names to constructors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rbee.core.errors import InvalidRequest
from rbee.engines.base import (
    MAX_SLOTS,
    MODEL_KINDS,
    AnyEngine,
    Engine,
    ModelKind,
    SamplingDefaults,
)


@dataclass(frozen=True)
class EngineOptions:
    model_path: str
    kind: ModelKind = "chat"
    tokenizer_path: str = ""  # engines whose tokenizer is a file apart (onnx)
    device: str = "cpu"
    threads: int | None = None
    context_length: int = 2048
    fake_tokens_per_second: float = 0.0
    fake_load_seconds: float = 0.0
    fake_fail_after: int | None = None
    fake_sentence_seconds: float = 0.0
    fake_speech_gate: str = ""
    fake_segment_seconds: float = 0.0
    fake_step_seconds: float = 0.0
    slots: int | None = None  # requests served at once; None: the engine's own
    defaults: SamplingDefaults = field(default_factory=SamplingDefaults)


def _llama(o: EngineOptions) -> Engine:
    from rbee.engines.llama_cpp import LlamaCppEngine

    return LlamaCppEngine(
        o.model_path, device=o.device, threads=o.threads, context_length=o.context_length,
        defaults=o.defaults,
    )


def _fake(o: EngineOptions) -> AnyEngine:
    from rbee.engines.fake import FakeEngine

    if o.kind == "embedding":
        from rbee.engines.fake_embedding import FakeEmbedder

        return FakeEmbedder(load_seconds=o.fake_load_seconds, slots=o.slots or 1)
    if o.kind == "speech":
        from rbee.engines.fake_speech import FakeSpeaker

        return FakeSpeaker(load_seconds=o.fake_load_seconds,
                           sentence_seconds=o.fake_sentence_seconds, gate=o.fake_speech_gate,
                           slots=o.slots or 1)
    if o.kind == "image":
        from rbee.engines.fake_image import FakeImageMaker

        return FakeImageMaker(load_seconds=o.fake_load_seconds,
                              step_seconds=o.fake_step_seconds, slots=o.slots or 1)

    if o.kind == "video":
        from rbee.engines.fake_video import FakeVideoMaker

        return FakeVideoMaker(load_seconds=o.fake_load_seconds,
                              step_seconds=o.fake_step_seconds, slots=o.slots or 1)
    if o.kind == "transcription":
        from rbee.engines.fake_transcription import FakeTranscriber

        return FakeTranscriber(load_seconds=o.fake_load_seconds,
                               segment_seconds=o.fake_segment_seconds, slots=o.slots or 1)

    return FakeEngine(
        tokens_per_second=o.fake_tokens_per_second, load_seconds=o.fake_load_seconds,
        fail_after=o.fake_fail_after, slots=o.slots or 1,
    )


def _onnx(o: EngineOptions) -> AnyEngine:
    from rbee.engines.onnx_embedding import OnnxEmbedder

    # Its slots are requests admitted at once: the worker merges them into one engine call.
    return OnnxEmbedder(o.model_path, o.tokenizer_path, threads=o.threads, slots=o.slots or 8)


def _piper(o: EngineOptions) -> AnyEngine:
    from rbee.engines.piper import PiperSpeaker

    return PiperSpeaker(o.model_path, threads=o.threads, slots=o.slots or 1)


def _whisper(o: EngineOptions) -> AnyEngine:
    from rbee.engines.whisper import WhisperTranscriber

    return WhisperTranscriber(o.model_path, device=o.device, threads=o.threads,
                              slots=o.slots or 1)


def _diffusers(o: EngineOptions) -> AnyEngine:
    from rbee.engines.diffusers_image import DiffusersImageMaker

    return DiffusersImageMaker(o.model_path, device=o.device, threads=o.threads,
                               slots=o.slots or 1)


def _diffusers_video(o: EngineOptions) -> AnyEngine:
    from rbee.engines.diffusers_video import DiffusersVideoMaker

    return DiffusersVideoMaker(o.model_path, device=o.device, threads=o.threads,
                               slots=o.slots or 1)


ENGINES: dict[str, Callable[[EngineOptions], AnyEngine]] = {
    "llama_cpp": _llama, "fake": _fake, "onnx": _onnx, "piper": _piper, "whisper": _whisper,
    "diffusers": _diffusers, "diffusers_video": _diffusers_video}
# What each engine's workers do (the fake engine does each, as its model says).
ENGINE_KINDS: dict[str, tuple[ModelKind, ...]] = {
    "llama_cpp": ("chat",), "fake": MODEL_KINDS, "onnx": ("embedding",), "piper": ("speech",),
    "whisper": ("transcription",), "diffusers": ("image",), "diffusers_video": ("video",)}
# The most requests each engine can serve at once (its class's `slots` where that is fixed:
# llama-cpp-python's Llama is not thread-safe). Here, not on the classes, so a hive can
# refuse a spawn at once without importing engines.
# onnxruntime's session runs from several threads at once.
# A Piper voice is one onnxruntime session; sentences of several requests may run at once.
# CTranslate2 runs one transcription per worker thread (faster-whisper's num_workers).
# A diffusers pipeline is one call at a time: its scheduler keeps the denoising state.
SLOT_LIMITS: dict[str, int] = {"llama_cpp": 1, "fake": MAX_SLOTS, "onnx": 64, "piper": 8,
                               "whisper": 8, "diffusers": 1, "diffusers_video": 1}


def check_slots(engine: str, slots: int | None) -> None:
    """Refuse `slots` the engine cannot serve at once (None: the engine's own number)."""
    limit = SLOT_LIMITS.get(engine, MAX_SLOTS)
    if slots is not None and not 1 <= slots <= limit:
        raise InvalidRequest(f"engine {engine} serves at most {limit} request(s) at once; "
                             f"slots {slots} is more than it can", param="slots")


def check_kind(engine: str, kind: ModelKind) -> None:
    """Refuse an engine for a model it cannot run (llama_cpp for an embedding model)."""
    kinds = ENGINE_KINDS.get(engine, ())
    if kinds and kind not in kinds:
        raise InvalidRequest(f"engine {engine} runs {' and '.join(kinds)} models, not "
                             f"{kind} models", param="engine")


def build_engine(name: str, options: EngineOptions) -> AnyEngine:
    try:
        factory = ENGINES[name]
    except KeyError:
        raise InvalidRequest(f"unknown engine {name!r}; known: {sorted(ENGINES)}") from None
    check_slots(name, options.slots)
    check_kind(name, options.kind)
    return factory(options)
