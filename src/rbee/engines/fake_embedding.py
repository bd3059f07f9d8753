"""A deterministic embedding engine for tests: a hashed bag of words, L2-normalised.

Identical texts give identical vectors, texts that share words point the same way, and no
weights are read. Words are whitespace-separated and lower-cased; each is one token whose id
is a hash of it, between the two special tokens (as a BERT tokenizer wraps [CLS] … [SEP]).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from typing import Literal

from rbee.core.errors import EngineError
from rbee.engines.base import ProgressFn

DIMENSIONS = 32
WINDOW = 64  # tokens, the two special ones included: small, so tests can pass it
VOCAB_SIZE = 30_000
CLS, SEP = 1, 2
_FIRST_WORD_ID = 3


def word_id(word: str) -> int:
    digest = hashlib.blake2b(word.lower().encode(), digest_size=8).digest()
    return _FIRST_WORD_ID + int.from_bytes(digest, "little") % (VOCAB_SIZE - _FIRST_WORD_ID)


def bag_of_words(ids: Sequence[int]) -> list[float]:
    """Each non-special token adds ±1 to one dimension (both from the id); then unit length.
    A sequence of special tokens only (a blank text) is the first axis."""
    vector = [0.0] * DIMENSIONS
    for token in ids:
        if token in (CLS, SEP):
            continue
        digest = hashlib.blake2b(token.to_bytes(8, "little"), digest_size=2).digest()
        vector[digest[0] % DIMENSIONS] += 1.0 if digest[1] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        return [1.0] + [0.0] * (DIMENSIONS - 1)
    return [v / norm for v in vector]


class FakeEmbedder:
    name = "fake"
    kind: Literal["embedding"] = "embedding"
    dimensions = DIMENSIONS
    max_tokens = WINDOW
    vocab_size = VOCAB_SIZE

    def __init__(self, *, load_seconds: float = 0.0, fail_load: bool = False,
                 slots: int = 1) -> None:
        self.slots = slots
        self._load_seconds = load_seconds
        self._fail_load = fail_load
        self.batches: list[int] = []  # the size of each batch embedded (tests look)

    def load(self, progress: ProgressFn) -> None:
        progress(0.0, "loading weights")
        time.sleep(self._load_seconds)
        if self._fail_load:
            raise EngineError("fake embedding engine told to fail loading")
        progress(1.0, "ready")

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.wrap([word_id(w) for w in text.split()]) for text in texts]

    def wrap(self, ids: Sequence[int]) -> list[int]:
        return [CLS, *ids, SEP]

    def embed(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        self.batches.append(len(batch))
        return [bag_of_words(ids) for ids in batch]

    def close(self) -> None:
        return None
