"""The fake embedding engine: deterministic unit vectors, a small window, BERT-like wrapping."""

from __future__ import annotations

import math

from rbee.engines.fake_embedding import CLS, DIMENSIONS, SEP, WINDOW, FakeEmbedder
from rbee.engines.onnx_embedding import BATCH, BATCH_TOKENS, passes
from rbee.engines.registry import EngineOptions, build_engine


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_identical_texts_give_identical_unit_vectors() -> None:
    e = FakeEmbedder()
    a, b, c = e.embed(e.tokenize(["the cat sat", "the cat sat", "a GPU kernel"]))
    assert a == b and a != c
    assert len(a) == DIMENSIONS and math.isclose(_cos(a, a), 1.0)
    assert _cos(a, e.embed(e.tokenize(["The CAT"]))[0]) > _cos(a, c)


def test_tokens_are_wrapped_like_bert_and_ids_give_the_same_vector() -> None:
    e = FakeEmbedder()
    (ids,) = e.tokenize(["one two"])
    assert ids[0] == CLS and ids[-1] == SEP and len(ids) == 4
    assert e.embed([e.wrap(ids[1:-1])]) == e.embed([ids])
    assert e.embed(e.tokenize([" "]))[0][0] == 1.0  # specials only: still a unit vector
    assert e.max_tokens == WINDOW


def test_the_registry_builds_it_for_embedding_models_only() -> None:
    assert build_engine("fake", EngineOptions("", kind="embedding")).kind == "embedding"
    assert build_engine("fake", EngineOptions("")).kind == "chat"


def test_onnx_passes_bound_sequences_and_padded_tokens() -> None:
    lengths = [5, 300, 3, 40, 40, 7] + [10] * 70
    chunks = passes(lengths)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    for chunk in chunks:
        longest = max(lengths[i] for i in chunk)
        assert len(chunk) <= BATCH
        assert len(chunk) == 1 or len(chunk) * longest <= BATCH_TOKENS
    assert [1] in chunks  # the 300-token input: alone
    assert passes([]) == []
