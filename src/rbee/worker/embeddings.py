"""An embeddings request on the worker: inputs to token ids (checked against the model's
window and vocabulary before anything runs), one batched call of the engine, the answer in
the encoding asked for."""

from __future__ import annotations

from rbee.api.embeddings import (
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    as_float32,
    encode_base64,
)
from rbee.core.errors import ContextLengthExceeded, InvalidRequest
from rbee.engines.base import Embedder


def token_ids(embedder: Embedder, request: EmbeddingRequest, model: str) -> list[list[int]]:
    """Each input as the model reads it. Too long is a 400 naming the input, never cut."""
    inputs = request.inputs()
    if isinstance(inputs[0], str):
        sequences = embedder.tokenize(inputs)
    else:
        sequences = [embedder.wrap(_in_vocabulary(ids, i, embedder.vocab_size))
                     for i, ids in enumerate(inputs)]
    for i, ids in enumerate(sequences):
        if len(ids) > embedder.max_tokens:
            raise ContextLengthExceeded(
                f"input[{i}] is {len(ids)} tokens; {model} reads at most "
                f"{embedder.max_tokens} tokens per input (its window, special tokens "
                "included): shorten or split it", param="input")
    return sequences


def _in_vocabulary(ids: list[int], index: int, vocab_size: int) -> list[int]:
    bad = next((t for t in ids if t >= vocab_size), None)
    if bad is not None:
        raise InvalidRequest(f"input[{index}] has token id {bad}; this model's vocabulary "
                             f"has {vocab_size} ids (0..{vocab_size - 1})", param="input")
    return ids


def check_dimensions(request: EmbeddingRequest, embedder: Embedder, model: str) -> None:
    """Only the model's own size: MiniLM was not trained to be cut (Matryoshka), so a
    shorter vector would silently lose quality."""
    if request.dimensions is not None and request.dimensions != embedder.dimensions:
        raise InvalidRequest(f"{model} makes vectors of {embedder.dimensions} dimensions "
                             "only; it cannot shorten them (it was not trained for it): "
                             f"leave dimensions out or set it to {embedder.dimensions}",
                             param="dimensions")


def response(request: EmbeddingRequest, model: str, vectors: list[list[float]],
             tokens: int) -> EmbeddingResponse:
    b64 = request.encoding_format == "base64"
    data = [Embedding(index=i, embedding=encode_base64(v) if b64 else as_float32(v))
            for i, v in enumerate(vectors)]
    return EmbeddingResponse(data=data, model=model,
                             usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))
