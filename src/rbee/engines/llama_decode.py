"""The llama.cpp token loop: evaluate the prompt, sample, stream text with stop strings held
back, count tokens exactly, attach logprobs.

Ours rather than `create_completion`'s: that one counts streamed text chunks (not tokens),
cannot sample with a grammar cheaply, needs `logits_all` (a context-sized logits buffer) for
logprobs, and reseeds "random" requests from the previous seed.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Iterator
from typing import Any

import llama_cpp

from rbee.engines import grammar
from rbee.engines.base import Finish, GenerationRequest, Output, Piece, TokenLogprob
from rbee.engines.llama_sampler import TokenSampler, top_logprobs


def grammar_for(request: GenerationRequest) -> str | None:
    """The GBNF constraining this request's answer, if any."""
    if request.calls_tools():
        chosen = [t for t in request.tools
                  if request.tool_name is None or t.name == request.tool_name]
        return grammar.for_tools(
            [(t.name, t.parameters) for t in chosen],
            parallel=request.parallel_tool_calls and request.tool_name is None,
            allow_text=request.tool_mode == "auto", text_schema=request.json_schema)
    if request.json_schema is not None:
        return grammar.for_schema(request.json_schema)
    return None


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters might be the start of a stop string."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


class Decoder:
    """One generation over a loaded Llama whose KV cache holds a prefix of the prompt."""

    def __init__(self, llm: Any, sampler: TokenSampler, stop: list[str],
                 logprobs: int | None) -> None:
        self._llm = llm
        self._sampler = sampler
        self._stops = [s for s in stop if s]
        self._logprobs = logprobs
        self._text = ""
        self._sent = 0
        self._pending: list[TokenLogprob] = []

    def _evaluate_prompt(self, tokens: list[int]) -> None:
        llm = self._llm
        cached = 0
        for a, b in zip(llm.input_ids[: llm.n_tokens], tokens, strict=False):
            if a != b:
                break
            cached += 1
        # At least the last prompt token is evaluated: its logits pick the first token.
        llm.n_tokens = min(cached, len(tokens) - 1)
        llm.eval(tokens[llm.n_tokens:])

    def run(self, tokens: list[int], limit: int, cancel: threading.Event) -> Iterator[Output]:
        self._evaluate_prompt(tokens)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = self._llm._model.vocab
        produced = 0
        reason: str = "length"
        while produced < limit:
            if cancel.is_set():
                yield Finish("cancelled", len(tokens), produced)
                return
            logits = self._sampler.logits()
            token = self._sampler.sample(logits)
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                reason = "stop"
                break
            produced += 1
            raw: bytes = self._llm.detokenize([token])
            if self._logprobs is not None:
                self._pending.append(self._logprob(logits, token, raw))
            self._text += decoder.decode(raw)
            piece, stopped = self._emit()
            if piece is not None:
                yield piece
            if stopped:
                reason = "stop"
                break
            if produced < limit:
                self._llm.eval([token])
        rest = self._text[self._sent:] if reason == "length" else ""
        if rest or (self._pending and reason == "length"):
            yield Piece(rest, tuple(self._pending))
        yield Finish("stop" if reason == "stop" else "length", len(tokens), produced)

    def _emit(self) -> tuple[Piece | None, bool]:
        """The text now safe to send (no stop string can begin in it), and whether a stop
        string has appeared (the text is cut before it)."""
        window = max((len(s) for s in self._stops), default=0)
        search_from = max(0, self._sent - window)
        hits = [i for s in self._stops if (i := self._text.find(s, search_from)) >= 0]
        if hits:
            end, stopped = min(hits), True
        else:
            end, stopped = len(self._text) - _held_back(self._text, self._stops), False
        if end <= self._sent:
            return None, stopped
        piece = Piece(self._text[self._sent:end], tuple(self._pending))
        self._sent, self._pending = end, []
        return piece, stopped

    def _logprob(self, logits: Any, token: int, raw: bytes) -> TokenLogprob:
        k = self._logprobs or 0
        own, best = top_logprobs(logits, token, k)
        top = tuple((bytes(self._llm.detokenize([t])), lp) for t, lp in best)
        return TokenLogprob(raw, own, top)
