"""How much memory a worker (llama.cpp) needs for a model, estimated before it starts.

The scheduler reserves `total_bytes` on a device. The estimate has three parts:
weights (the GGUF's tensor data), the KV cache (f16, every layer, the whole context) and
llama.cpp's compute buffers. HEADROOM then adds a fraction and a fixed amount on top.
This is the same accounting as GPUStack's gguf-parser and Ollama's `EstimateGPULayers`.

Measured for SmolLM2-135M Q4_1, llama-cpp-python 0.3.36 on the CPU (peak RSS of a real
`python -m rbee.worker` process after it filled its context):

    n_ctx   llama.cpp reports (weights + KV + compute)   peak RSS    this estimate
    2048    92.1 + 45.0 + 99.4 MiB                       283.9 MiB   341.4 MiB
    8192    92.1 + 180.0 + 166.4 MiB                     579.1 MiB   623.5 MiB

Only the GGUF header is read, and it is walked here rather than by `gguf.GGUFReader`.
The reader builds a numpy view for every tokenizer string, which takes 3.5 s on SmolLM2's
98k tokens. The walk takes about 20 ms. It still uses the gguf package's constants.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import gguf

from rbee.models.catalog import ModelRef, builtin_path

MiB = 1 << 20
GiB = 1 << 30

# What the worker really runs with: WorkerSettings.context_length (a test keeps them equal).
WORKER_CONTEXT = 2048
# llama-cpp-python's n_batch and n_ubatch: the most tokens one forward pass (graph) holds.
UBATCH = 512
# When the header can't be read: weights ≈ file size, plus 20% for the KV cache and compute.
FILE_SIZE_FACTOR = 1.2
F16_BYTES = 2

Source = Literal["gguf", "file-size", "default"]


@dataclass(frozen=True)
class Headroom:
    """Memory on top of the estimate: `fraction` of it plus `fixed_bytes`."""

    fraction: float
    fixed_bytes: int

    def apply(self, nbytes: int) -> int:
        return nbytes + math.ceil(nbytes * self.fraction) + self.fixed_bytes


# fixed_bytes is the worker process before it loads anything. Python, the worker's web
# stack and the llama.cpp libraries measured 61 MiB RSS, and a fake worker 45 MiB.
# fraction covers what scales with the model: allocator fragmentation, pages that
# llama-cpp-python touches outside ggml's buffers, and the error of the compute formula
# (1.6% low at 8192 tokens). With it the estimate is 7.7% (8192) to 20% (2048) above the
# measured peak RSS.
HEADROOM = Headroom(fraction=0.10, fixed_bytes=64 * MiB)
# Extra memory on a GPU: the CUDA/Metal context and kernels the engine loads, which
# nvidia-smi charges to the process. This is Ollama's per-GPU minimum (457 MiB), rounded up.
# It is not measured here, because no GPU was available.
ACCELERATOR_CONTEXT_BYTES = 512 * MiB


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a worker needs for one model; `total_bytes` is what to reserve."""

    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int
    context_length: int
    source: Source

    @property
    def total_bytes(self) -> int:
        return HEADROOM.apply(self.weights_bytes + self.kv_cache_bytes + self.compute_bytes)

    def device_bytes(self, device: str) -> int:
        """`total_bytes` for a "cpu" worker; on "cuda:N"/"metal", plus the GPU context."""
        return self.total_bytes + (0 if device == "cpu" else ACCELERATOR_CONTEXT_BYTES)


# No file to read (an `hf:` model not downloaded yet, a missing file): enough for a 3B
# model at Q4 or a 1B one at Q8 with its context, less than a 7B model needs. The worker's
# RSS is measured once it runs, and that number replaces this one.
DEFAULT = MemoryEstimate(2 * GiB, 0, 0, WORKER_CONTEXT, "default")
# The fake engine loads no weights; its worker is the bare process (45 MiB measured), which
# HEADROOM.fixed_bytes already holds, so its total is 64 MiB.
FAKE = MemoryEstimate(0, 0, 0, WORKER_CONTEXT, "default")
# An onnx embedding worker: its weights file, plus onnxruntime, the tokenizer and the
# activations of one forward pass (at most engines.onnx_embedding.BATCH_TOKENS tokens).
# Measured for all-MiniLM-L6-v2 int8 (23 MB file), onnxruntime 1.32 on the CPU: a real
# worker's RSS was 386 MiB after embedding 64 inputs of 252 tokens (1,024-token passes;
# 32-input passes took 1.4 GB); this estimate is 440 MiB.
# A Piper worker (piper-joe, 60 MiB file) measured 296 MiB RSS after speaking three
# sentences: its estimate the same way (file + 320 MiB = 380 MiB) holds it.
ONNX_RUNTIME_BYTES = 320 * MiB
# A faster-whisper worker: its model.bin plus CTranslate2, PyAV, numpy and the decoder's
# buffers for 30-second windows. Measured for Whisper tiny.en (75 MB int8 model.bin,
# CTranslate2 4.8.5, one thread): a real worker's RSS was 197 MiB once loaded, 291 MiB after
# transcribing 18 s of speech (verbose_json, then word timestamps), its peak 339 MiB; this
# estimate is 392 MiB.
CTRANSLATE2_BYTES = 320 * MiB
# A diffusers worker: torch, diffusers and transformers imported and a pipeline's buffers,
# plus its weights times DIFFUSERS_FACTOR. The safetensors of real pipelines are mostly
# fp16, which the CPU runs as fp32 (twice the bytes); on a GPU they stay fp16, and the other
# half covers the activations of one 512-1024 px picture (VAE decode is the peak), or the
# latents and attention over every frame of a video at once.
# Measured: a worker with the tiny test image pipeline (6 MB) had 594 MiB RSS after painting
# (tests/e2e/test_real_images.py prints it); one with the tests' tiny AnimateDiff pipeline
# (0.8 MB, torch 2.13 CPU) 524 MiB when ready, 587 MiB after 8 frames of 64x64 and 735 MiB
# after 16 frames of 128x128. A video's activations grow with frames x pixels, which a
# per-model estimate does not see (bounded by RBEE_QUEEN_VIDEO_MAX_PIXELS/MAX_FRAMES).
DIFFUSERS_RUNTIME_BYTES = 768 * MiB
DIFFUSERS_FACTOR = 2.0


def estimate_file(path: Path, context_length: int | None = None) -> MemoryEstimate:
    """Estimate from a model file's GGUF header; never raises for a file it can't parse.

    `context_length` defaults to what the worker uses (WORKER_CONTEXT), even past the
    context the model was trained on: the worker does not cap it, and llama.cpp allocates
    what it is given. An explicit value is taken as given too.
    Anything that is not a readable GGUF falls back to file size x 1.2 ("file-size").
    Raises FileNotFoundError when `path` does not exist.
    """
    _check_context(context_length)
    path = Path(path)
    size = path.stat().st_size
    try:
        header = _read_header(path, size)
        return _from_header(header, context_length)
    except (_Corrupt, OSError, ValueError):
        return _from_size(size, context_length)


def estimate_ref(ref: ModelRef, context_length: int | None = None, *,
                 hf_cache: Path | None = None) -> MemoryEstimate:
    """Estimate for a model reference, reading the weights when they are on this machine.

    `hf_cache` is the `cache_dir` the hive gives `hf_hub_download`. Without it, or when the
    file is not in it yet, an `hf:` model gets DEFAULT.
    """
    _check_context(context_length)
    if ref.engine == "fake":
        return _fixed(FAKE, context_length)
    if ref.engine in ("diffusers", "diffusers_video"):
        return _diffusers(_pipeline_folder(ref, hf_cache), context_length)
    path = _local_weights(ref, hf_cache)
    if path is None:
        return _fixed(DEFAULT, context_length)
    if ref.engine in ("onnx", "piper"):  # both onnxruntime on the CPU
        return _onnx(path, context_length)
    if ref.engine == "whisper":
        return _whisper(path, context_length)
    try:
        return estimate_file(path, context_length)
    except FileNotFoundError:  # removed since we looked
        return _fixed(DEFAULT, context_length)


def kv_cache_bytes(n_ctx: int, kv_heads: tuple[int, ...], key_dim: int, value_dim: int) -> int:
    """f16 K and V for every layer (`kv_heads` has one entry per layer) and every position.

    This is llama.cpp's layout when flash attention is off. Sliding-window and MLA models
    use less, so for them the estimate is conservative.
    """
    return F16_BYTES * n_ctx * sum(kv_heads) * (key_dim + value_dim)


def compute_bytes(n_ctx: int, n_embd: int, n_head: int, n_vocab: int) -> int:
    """llama.cpp's scratch memory for one forward pass of a UBATCH-token batch.

    The graph buffer is the larger of two peaks: attention scores (f32, ctx x batch x heads)
    and the output logits (f32, vocab x batch). This is Ollama's llama graph formula.
    ggml's work buffer is added to it, because with flash attention off it converts the
    scores to f16 before multiplying them by V. llama.cpp reports only the graph buffer,
    which is why the measured RSS is higher than its figure.
    """
    batch = min(UBATCH, n_ctx)
    attention = 1 + 4 * n_embd + n_ctx * (1 + n_head)
    logits = n_embd + n_vocab
    return 4 * batch * max(attention, logits) + F16_BYTES * batch * n_ctx * n_head


def _check_context(context_length: int | None) -> None:
    if context_length is not None and context_length < 1:
        raise ValueError(f"context_length must be positive, got {context_length}")


def _fixed(base: MemoryEstimate, context_length: int | None) -> MemoryEstimate:
    return replace(base, context_length=context_length or WORKER_CONTEXT)


def _onnx(path: Path, context_length: int | None) -> MemoryEstimate:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return _fixed(DEFAULT, context_length)
    return MemoryEstimate(size, 0, ONNX_RUNTIME_BYTES, context_length or WORKER_CONTEXT,
                          "file-size")


def _whisper(path: Path, context_length: int | None) -> MemoryEstimate:
    weights = path / "model.bin" if path.is_dir() else path
    try:
        size = weights.stat().st_size
    except FileNotFoundError:
        return _fixed(DEFAULT, context_length)
    return MemoryEstimate(size, 0, CTRANSLATE2_BYTES, context_length or WORKER_CONTEXT,
                          "file-size")


def _diffusers(folder: Path | None, context_length: int | None) -> MemoryEstimate:
    """The safetensors in a pipeline folder (every component's) x DIFFUSERS_FACTOR, plus
    the runtime; a pipeline not on this machine (not downloaded yet) gets DEFAULT."""
    if folder is None or not (folder / "model_index.json").is_file():
        return _fixed(DEFAULT, context_length)
    weights = sum(p.stat().st_size for p in folder.rglob("*.safetensors") if p.is_file())
    extra = math.ceil(weights * (DIFFUSERS_FACTOR - 1))
    return MemoryEstimate(weights, 0, extra + DIFFUSERS_RUNTIME_BYTES,
                          context_length or WORKER_CONTEXT, "file-size")


def _pipeline_folder(ref: ModelRef, hf_cache: Path | None) -> Path | None:
    if ref.source == "file" and ref.path is not None:
        return Path(ref.path)
    if ref.source == "hf" and hf_cache is not None and ref.repo:
        root = hf_cache / f"models--{ref.repo.replace('/', '--')}"
        main = root / "refs" / "main"
        if main.is_file():
            return root / "snapshots" / main.read_text().strip()
    return None


def _from_size(size: int, context_length: int | None) -> MemoryEstimate:
    extra = math.ceil(size * FILE_SIZE_FACTOR) - size
    return MemoryEstimate(size, 0, extra, context_length or WORKER_CONTEXT, "file-size")


def _local_weights(ref: ModelRef, hf_cache: Path | None) -> Path | None:
    if ref.source == "builtin":
        return builtin_path(ref.name)
    if ref.source == "file" and ref.path is not None:
        path = Path(ref.path)
        return path if path.is_file() else None
    if ref.source == "hf" and hf_cache is not None and ref.repo and ref.filename:
        return _hf_cached(hf_cache, ref.repo, ref.filename)
    return None


def _hf_cached(cache: Path, repo: str, filename: str) -> Path | None:
    """The file in a huggingface_hub cache, preferring the snapshot `refs/main` points to."""
    root = cache / f"models--{repo.replace('/', '--')}"
    main = root / "refs" / "main"
    if main.is_file():
        candidate = root / "snapshots" / main.read_text().strip() / filename
        if candidate.is_file():
            return candidate
    return next((p for p in sorted(root.glob(f"snapshots/*/{filename}")) if p.is_file()), None)


# --- the GGUF header -------------------------------------------------------------------

Value = int | float | bool | str | tuple[int | float | bool, ...]
_FORMATS = {
    gguf.GGUFValueType.UINT8: "B", gguf.GGUFValueType.INT8: "b",
    gguf.GGUFValueType.UINT16: "H", gguf.GGUFValueType.INT16: "h",
    gguf.GGUFValueType.UINT32: "I", gguf.GGUFValueType.INT32: "i",
    gguf.GGUFValueType.UINT64: "Q", gguf.GGUFValueType.INT64: "q",
    gguf.GGUFValueType.FLOAT32: "f", gguf.GGUFValueType.FLOAT64: "d",
    gguf.GGUFValueType.BOOL: "?",
}
_DECODED_ARRAY = 4096  # numeric arrays up to this long are decoded (per-layer head counts)
_MAX_DIMS = 8  # ggml has 4; more means a corrupt tensor entry
_MAX_NESTING = 4


class _Corrupt(ValueError):
    """Not a GGUF file, or one whose header does not hold together."""


@dataclass(frozen=True)
class _Header:
    values: dict[str, Value]
    counts: dict[str, int]  # every array's length, decoded or skipped
    weights_bytes: int
    embedding_rows: int  # token_embd.weight's rows (the vocabulary), 0 if absent


class _Cursor:
    """Reads little- or big-endian GGUF fields from the mapped file.

    Every read is bounds-checked: reading past the end raises struct.error.
    """

    def __init__(self, buf: mmap.mmap, order: str, pos: int) -> None:
        self.buf, self.order, self.pos = buf, order, pos
        self._u64 = struct.Struct(order + "Q")

    def read(self, fmt: str) -> tuple[int | float | bool, ...]:
        values = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += struct.calcsize(self.order + fmt)
        return values

    def uint(self, fmt: str = "I") -> int:
        return int(self.read(fmt)[0])

    def string(self) -> str:
        n = self.uint("Q")
        raw = self.buf[self.pos:self.pos + n]
        if len(raw) != n:
            raise _Corrupt("string runs past the end of the file")
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, kind: int) -> Value:
        if kind == gguf.GGUFValueType.STRING:
            return self.string()
        return self.read(_FORMATS[gguf.GGUFValueType(kind)])[0]

    def skip(self, kind: int, count: int, depth: int = 0) -> None:
        """Step over `count` values of `kind`. Token lists take most of the time here."""
        if kind == gguf.GGUFValueType.STRING:
            unpack, buf, pos = self._u64.unpack_from, self.buf, self.pos
            for _ in range(count):
                pos += 8 + unpack(buf, pos)[0]
            self.pos = pos
        elif kind == gguf.GGUFValueType.ARRAY:
            if depth >= _MAX_NESTING:
                raise _Corrupt("arrays nested too deep")
            for _ in range(count):
                inner, n = self.uint(), self.uint("Q")
                self.skip(inner, n, depth + 1)
        else:
            self.pos += count * struct.calcsize(_FORMATS[gguf.GGUFValueType(kind)])
        if self.pos > len(self.buf):
            raise _Corrupt("array runs past the end of the file")


def _read_header(path: Path, size: int) -> _Header:
    if size < 24:
        raise _Corrupt("too short for a GGUF header")
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            return _parse(buf)
        except (struct.error, KeyError, OverflowError, MemoryError) as exc:
            raise _Corrupt(f"unreadable GGUF header: {exc!r}") from exc


def _parse(buf: mmap.mmap) -> _Header:
    if buf[:4] != struct.pack("<I", gguf.GGUF_MAGIC):
        raise _Corrupt("not a GGUF file")
    # A big-endian file's version reads as a huge number in little-endian order (GGUFReader).
    order = "<" if struct.unpack_from("<I", buf, 4)[0] & 0xFFFF else ">"
    cur = _Cursor(buf, order, 4)
    version, n_tensors, n_kv = cur.uint(), cur.uint("Q"), cur.uint("Q")
    if version not in (2, 3):
        raise _Corrupt(f"unsupported GGUF version {version}")
    values, counts = _metadata(cur, n_kv)
    weights, rows, end = _tensors(cur, n_tensors)
    alignment = values.get(gguf.Keys.General.ALIGNMENT, gguf.GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment < 1:
        raise _Corrupt(f"bad alignment {alignment!r}")
    data_start = -(-cur.pos // alignment) * alignment
    if data_start + end > len(buf):
        raise _Corrupt("tensor data runs past the end of the file (truncated?)")
    return _Header(values, counts, weights, rows)


def _metadata(cur: _Cursor, n_kv: int) -> tuple[dict[str, Value], dict[str, int]]:
    values: dict[str, Value] = {}
    counts: dict[str, int] = {}
    for _ in range(n_kv):
        key, kind = cur.string(), cur.uint()
        if kind != gguf.GGUFValueType.ARRAY:
            values[key] = cur.value(kind)
            continue
        item, count = cur.uint(), cur.uint("Q")
        counts[key] = count
        if item in _FORMATS and count <= _DECODED_ARRAY:
            values[key] = cur.read(f"{count}{_FORMATS[gguf.GGUFValueType(item)]}")
        else:
            cur.skip(item, count)
    return values, counts


def _tensors(cur: _Cursor, n_tensors: int) -> tuple[int, int, int]:
    """(sum of tensor sizes, token_embd rows, end of the last tensor's data)."""
    total = end = rows = 0
    for _ in range(n_tensors):
        name, n_dims = cur.string(), cur.uint()
        if n_dims > _MAX_DIMS:
            raise _Corrupt(f"tensor {name!r} has {n_dims} dimensions")
        dims = [int(d) for d in cur.read(f"{n_dims}Q")]
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(cur.uint())]
        offset = cur.uint("Q")
        nbytes = math.prod(dims) * type_size // block
        total += nbytes
        end = max(end, offset + nbytes)
        if name == "token_embd.weight" and n_dims >= 2:
            rows = dims[1]
    return total, rows, end


def _from_header(header: _Header, context_length: int | None) -> MemoryEstimate:
    values = header.values
    arch = values.get(gguf.Keys.General.ARCHITECTURE)
    if not isinstance(arch, str):
        raise _Corrupt("no general.architecture")

    def key(template: str) -> Value | None:
        return values.get(template.format(arch=arch))

    n_layer = _int(key(gguf.Keys.LLM.BLOCK_COUNT))
    n_embd = _int(key(gguf.Keys.LLM.EMBEDDING_LENGTH))
    if n_layer < 1 or n_embd < 1:
        raise _Corrupt(f"no {arch}.block_count or {arch}.embedding_length")
    heads = _per_layer(key(gguf.Keys.Attention.HEAD_COUNT), n_layer)
    kv_heads = _per_layer(key(gguf.Keys.Attention.HEAD_COUNT_KV), n_layer) or heads
    head_dim = n_embd // max(heads) if any(heads) else 0
    key_dim = _int(key(gguf.Keys.Attention.KEY_LENGTH)) or head_dim
    value_dim = _int(key(gguf.Keys.Attention.VALUE_LENGTH)) or head_dim
    n_vocab = (_int(key(gguf.Keys.LLM.VOCAB_SIZE))
               or header.counts.get(gguf.Keys.Tokenizer.LIST, 0) or header.embedding_rows)
    # The worker allocates its own context (2048) even for a model trained on less: so do we.
    n_ctx = context_length or WORKER_CONTEXT
    return MemoryEstimate(
        weights_bytes=header.weights_bytes,
        kv_cache_bytes=kv_cache_bytes(n_ctx, kv_heads, key_dim, value_dim),
        compute_bytes=compute_bytes(n_ctx, n_embd, max(heads, default=0), n_vocab),
        context_length=n_ctx, source="gguf")


def _int(value: Value | None) -> int:
    """A non-negative integer field; 0 when absent, for the caller's `or` default."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if value is None:
        return 0
    raise _Corrupt(f"expected an integer, got {value!r}")


def _per_layer(value: Value | None, n_layer: int) -> tuple[int, ...]:
    """A head count as one entry per layer: GGUF stores one number or a per-layer array."""
    if isinstance(value, tuple):
        if len(value) != n_layer:
            raise _Corrupt(f"{len(value)} per-layer values for {n_layer} layers")
        return tuple(_int(v) for v in value)
    count = _int(value)
    return (count,) * n_layer if count else ()
