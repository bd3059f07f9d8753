"""Sentence embeddings from a BERT-style ONNX model (all-MiniLM-L6-v2 int8) with onnxruntime.

The model gives `last_hidden_state`; the sentence vector is its mean over the real tokens
(the attention mask), L2-normalised: sentence-transformers' Pooling(mean) + Normalize for
this model. Tokens come from a Hugging Face `tokenizer.json` with its truncation and padding
turned off: the worker refuses an input longer than the window instead of cutting it, and
pads each batch itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from rbee.core.errors import EngineError
from rbee.engines.base import ProgressFn

# A forward pass takes up to BATCH sequences and BATCH_TOKENS tokens (padding included):
# activations grow with batch x length (attention with its square), and 32 inputs of 256
# tokens in one pass took 1.4 GB. Sorted by length first, a batch pads to similar lengths.
BATCH = 32
BATCH_TOKENS = 1024
DEFAULT_WINDOW = 256  # all-MiniLM-L6-v2: sentence_bert_config.json max_seq_length


class OnnxEmbedder:
    name = "onnx"
    kind: Literal["embedding"] = "embedding"

    def __init__(self, model_path: str, tokenizer_path: str, *, threads: int | None = None,
                 slots: int = 1) -> None:
        self.slots = slots
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._threads = threads
        self.dimensions = 0
        self.max_tokens = DEFAULT_WINDOW
        self.vocab_size = 0
        self._session: Any = None
        self._tokenizer: Any = None
        self._cls: int | None = None
        self._sep: int | None = None
        self._lock = threading.Lock()  # the tokenizer object is shared across slots

    def load(self, progress: ProgressFn) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EngineError("the onnx embedding engine needs onnxruntime and tokenizers: "
                              "pip install 'rbee[embeddings]'") from exc
        progress(0.1, "loading tokenizer")
        try:
            tokenizer = Tokenizer.from_file(self._tokenizer_path)
        except Exception as exc:  # the library raises plain Exception on a bad file
            raise EngineError(f"cannot read tokenizer {self._tokenizer_path!r}: {exc}") from exc
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self._cls, self._sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        self.max_tokens = _window(Path(self._tokenizer_path).parent)
        progress(0.3, "loading weights")
        options = ort.SessionOptions()
        if self._threads:
            options.intra_op_num_threads = self._threads
        try:
            self._session = ort.InferenceSession(self._model_path, options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types are not importable
            raise EngineError(f"cannot load {self._model_path!r}: {exc}") from exc
        self.dimensions = int(self._session.get_outputs()[0].shape[-1])
        progress(1.0, "ready")

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        with self._lock:
            return [list(e.ids) for e in self._tokenizer.encode_batch(list(texts))]

    def wrap(self, ids: Sequence[int]) -> list[int]:
        head = [] if self._cls is None else [self._cls]
        tail = [] if self._sep is None else [self._sep]
        return [*head, *ids, *tail]

    def embed(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in batch]
        for chunk in passes([len(s) for s in batch]):
            for i, vector in zip(chunk, self._forward([batch[i] for i in chunk]), strict=True):
                out[i] = vector
        return out

    def _forward(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        import numpy as np

        width = max(len(s) for s in sequences)
        ids = np.zeros((len(sequences), width), dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, seq in enumerate(sequences):
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        (hidden,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": np.zeros_like(ids)})
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors: list[list[float]] = (pooled / np.maximum(norms, 1e-12)).tolist()
        return vectors

    def close(self) -> None:
        self._session = None


def passes(lengths: Sequence[int]) -> list[list[int]]:
    """Indexes of the sequences each forward pass takes: shortest first, at most BATCH of
    them and BATCH_TOKENS once padded to the longest (a longer sequence goes alone)."""
    out: list[list[int]] = []
    chunk: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if chunk and (len(chunk) == BATCH or (len(chunk) + 1) * lengths[i] > BATCH_TOKENS):
            out.append(chunk)
            chunk = []
        chunk.append(i)
    return [*out, chunk] if chunk else out


def _window(folder: Path) -> int:
    """The model's window from sentence-transformers' config beside the tokenizer."""
    try:
        config = json.loads((folder / "sentence_bert_config.json").read_text())
        return int(config["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_WINDOW
