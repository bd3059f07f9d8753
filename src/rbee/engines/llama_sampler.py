"""Token sampling for the llama.cpp adapter: penalties, logit bias, a grammar, logprobs.

llama-cpp-python puts a grammar first in its sampler chain, where it is checked against
every token of the vocabulary at every step (49,152 for SmolLM2: 62 % of the unconstrained
speed, measured). We do what llama.cpp's own `common_sampler` does: sample without the
grammar, check only the chosen token against it, and only when the grammar rejects that
token apply it to the whole vocabulary and sample again. Most tokens pass the cheap check.

Logprobs are the model's own (raw logits, log-softmaxed), as OpenAI and vLLM report them:
before penalties, bias, temperature or the grammar.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaSampler

from rbee.engines.base import SamplingDefaults

_TOKEN = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
MIN_P = 0.05  # llama-cpp-python's create_completion default, kept so seeded answers hold


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    repeat_penalty: float
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = 0
    logit_bias: Mapping[int, float] | None = None
    penalty_last_n: int = 64


def resolve(defaults: SamplingDefaults, temperature: float | None, top_p: float | None,
            top_k: int | None) -> tuple[float, float, int]:
    return (defaults.temperature if temperature is None else temperature,
            defaults.top_p if top_p is None else top_p,
            defaults.top_k if top_k is None else top_k)


def _chain(s: Sampling, n_vocab: int) -> Any:
    chain = LlamaSampler()  # type: ignore[no-untyped-call]
    if s.logit_bias:
        # -100 bans a token outright (OpenAI's meaning); -inf, not a large negative logit.
        bias = {t: (-math.inf if b <= -100 else b) for t, b in s.logit_bias.items()}
        chain.add_logit_bias(n_vocab, bias)
    chain.add_penalties(n_vocab=n_vocab, penalty_last_n=s.penalty_last_n,
                        penalty_repeat=s.repeat_penalty, penalty_freq=s.frequency_penalty,
                        penalty_present=s.presence_penalty)
    if s.temperature == 0:
        chain.add_greedy()  # type: ignore[no-untyped-call]
    else:
        chain.add_top_k(s.top_k)
        chain.add_typical(1.0, 1)
        chain.add_top_p(s.top_p, 1)
        chain.add_min_p(MIN_P, 1)
        chain.add_temp(s.temperature)
        chain.add_dist(s.seed)
    return chain


class TokenSampler:
    """Samples one token at a time from the context's last logits."""

    def __init__(self, model: Any, ctx: Any, sampling: Sampling, grammar: str | None) -> None:
        self._ctx = ctx
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(model.vocab))
        self._chain = _chain(sampling, self._n_vocab)
        self._grammar: Any = None
        if grammar is not None:
            self._grammar = llama_cpp.llama_sampler_init_grammar(
                model.vocab, grammar.encode(), b"root")
            if not self._grammar:
                raise ValueError("llama.cpp rejected the generated grammar")
        self._cells = np.zeros(self._n_vocab, dtype=_TOKEN)
        self._ids = np.arange(self._n_vocab, dtype=np.int32)
        self._one = (llama_cpp.llama_token_data * 1)()

    def logits(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def sample(self, logits: np.ndarray[Any, np.dtype[np.float32]]) -> int:
        token = self._apply(logits, grammar_first=False)
        if self._grammar is not None and not self._allowed(token, float(logits[token])):
            token = self._apply(logits, grammar_first=True)
        if self._grammar is not None:
            llama_cpp.llama_sampler_accept(self._grammar, token)
        self._chain.accept(token)
        return token

    def _apply(self, logits: np.ndarray[Any, np.dtype[np.float32]], grammar_first: bool
               ) -> int:
        cells = self._cells
        cells["id"] = self._ids
        cells["logit"] = logits
        cells["p"] = 0.0
        data = cells.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        arr = llama_cpp.llama_token_data_array(data=data, size=self._n_vocab, selected=-1,
                                               sorted=False)
        if grammar_first:
            llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(arr))
        llama_cpp.llama_sampler_apply(self._chain.sampler, ctypes.byref(arr))
        if arr.selected < 0:
            raise RuntimeError("the sampler chose no token")
        return int(arr.data[arr.selected].id)

    def _allowed(self, token: int, logit: float) -> bool:
        self._one[0] = llama_cpp.llama_token_data(id=token, logit=logit, p=0.0)
        arr = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1,
                                               sorted=False)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(arr))
        return bool(math.isfinite(self._one[0].logit))

    def close(self) -> None:
        if self._grammar is not None:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None
        self._chain.close()


def top_logprobs(logits: np.ndarray[Any, np.dtype[np.float32]], token: int, k: int
                 ) -> tuple[float, list[tuple[int, float]]]:
    """The token's log-probability and the k likeliest tokens with theirs."""
    values = logits.astype(np.float64)
    peak = float(values.max())
    logz = peak + math.log(float(np.exp(values - peak).sum()))
    own = float(values[token]) - logz
    if k <= 0:
        return own, []
    best = np.argpartition(-values, k)[:k]
    best = best[np.argsort(-values[best])]
    return own, [(int(t), float(values[t]) - logz) for t in best]
