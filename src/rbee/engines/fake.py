"""A deterministic engine for tests and benchmarks: no weights, set speed, injectable faults."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator

from rbee.core.errors import EngineError
from rbee.engines.base import (
    DEFAULT_MAX_TOKENS,
    Finish,
    GenerationRequest,
    Output,
    Piece,
    ProgressFn,
)

_WORDS = ("the", "bee", "hive", "queen", "buzz", "honey", "comb", "flower", "swarm", "wax")


def fake_text(prompt: str, seed: int | None, n: int) -> list[str]:
    """The pieces the fake engine answers with: a function of prompt and seed only."""
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return [f" {_WORDS[digest[i % len(digest)] % len(_WORDS)]}" for i in range(n)]


class FakeEngine:
    name = "fake"

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
        prompt = request.prompt or " ".join(m.get("content", "") for m in request.messages)
        limit = request.max_tokens or DEFAULT_MAX_TOKENS
        prompt_tokens = max(1, len(prompt.split()))
        produced = 0
        text = ""
        for piece in fake_text(prompt, request.seed, limit):
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
            yield Piece(piece)
        yield Finish("length", prompt_tokens, produced)

    def close(self) -> None:
        return None
