"""A deterministic engine for tests and benchmarks: no weights, set speed, injectable faults."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Literal

from rbee.core.errors import EngineError
from rbee.engines.base import (
    DEFAULT_MAX_TOKENS,
    Finish,
    GenerationRequest,
    Output,
    Piece,
    ProgressFn,
    TokenLogprob,
)
from rbee.engines.json_schema import dumps, minimal_instance
from rbee.engines.tool_format import render_calls, split_calls

# The fake vocabulary: a word's token id is its index (what logit_bias names).
_WORDS = ("the", "bee", "hive", "queen", "buzz", "honey", "comb", "flower", "swarm", "wax")
VOCAB_SIZE = len(_WORDS)


def fake_text(prompt: str, seed: int | None, n: int, banned: Sequence[int] = ()) -> list[str]:
    """The pieces the fake engine answers with: a function of prompt and seed only."""
    words = [w for i, w in enumerate(_WORDS) if i not in banned] or ["."]
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return [f" {words[digest[i % len(digest)] % len(words)]}" for i in range(n)]


def fake_logprob(piece: str, top: int) -> TokenLogprob:
    """Made-up but well-formed: the token is the likeliest, alternatives in vocabulary order."""
    own = -0.1 * (len(piece) % 7 + 1)
    alts = [w for w in _WORDS if f" {w}" != piece][: max(0, top - 1)]
    ranked = [(piece.encode(), own)] + [(f" {w}".encode(), own - 1.0 - i) for i, w in
                                        enumerate(alts)]
    return TokenLogprob(piece.encode(), own, tuple(ranked[:top]))


def _chunks(text: str, size: int = 4) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def structured_text(request: GenerationRequest, prompt: str) -> list[str] | None:
    """The pieces of a tool call or a schema's minimal instance, when one is asked for. With
    tool_choice auto, a conversation that already ends in a tool result gets text."""
    if request.calls_tools() and not (request.tool_mode == "auto"
                                      and "<tool_response>" in prompt.rsplit("\n", 1)[-1]):
        tool = next((t for t in request.tools if t.name == request.tool_name),
                    request.tools[0])
        args = minimal_instance(tool.parameters) if tool.parameters is not None else {}
        return _chunks(render_calls([{"name": tool.name, "arguments": args}]))
    if request.json_schema is not None:
        return _chunks(dumps(minimal_instance(request.json_schema)))
    return None


class FakeEngine:
    name = "fake"
    kind: Literal["chat"] = "chat"
    vision = False

    def __init__(
        self,
        *,
        tokens_per_second: float = 0.0,
        load_seconds: float = 0.0,
        fail_after: int | None = None,
        fail_load: bool = False,
        slots: int = 1,
    ) -> None:
        self.slots = slots  # generations share no state: any number really run at once
        self._delay = 1.0 / tokens_per_second if tokens_per_second > 0 else 0.0
        self._load_seconds = load_seconds
        self._fail_after = fail_after
        self._fail_load = fail_load
        self.generations = 0
        self._count = threading.Lock()  # `generations` is bumped from several threads

    def load(self, progress: ProgressFn) -> None:
        steps = 4
        for i in range(steps):
            progress(i / steps, "loading weights")
            time.sleep(self._load_seconds / steps)
        if self._fail_load:
            raise EngineError("fake engine told to fail loading")
        progress(1.0, "ready")

    def generate(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Output]:
        with self._count:
            self.generations += 1
        outputs = self._generate(request, cancel)
        yield from split_calls(outputs) if request.calls_tools() else outputs

    def _generate(self, request: GenerationRequest, cancel: threading.Event
                  ) -> Iterator[Output]:
        prompt = request.prompt or "\n".join(m.get("content", "") for m in request.messages)
        limit = request.max_tokens or DEFAULT_MAX_TOKENS
        prompt_tokens = max(1, len(prompt.split()))
        produced = 0
        text = ""
        banned = [t for t, bias in request.logit_bias.items() if bias <= -100]
        # Penalties change the answer (as they would a model's), deterministically.
        salt = f"{request.presence_penalty}:{request.frequency_penalty}:{prompt}"
        pieces = structured_text(request, prompt) or fake_text(salt, request.seed, limit,
                                                               banned)
        for piece in pieces[:limit]:
            if cancel.is_set():
                yield Finish("cancelled", prompt_tokens, produced)
                return
            if self._fail_after is not None and produced >= self._fail_after:
                raise EngineError("fake engine told to fail mid-generation")
            if self._delay:
                time.sleep(self._delay)
            text += piece
            if any(s and s in text for s in request.stop):
                yield Finish("stop", prompt_tokens, produced)
                return
            produced += 1
            top = request.logprobs
            yield Piece(piece, () if top is None else (fake_logprob(piece, top),))
        yield Finish("stop" if len(pieces) < limit else "length", prompt_tokens, produced)

    def close(self) -> None:
        return None
