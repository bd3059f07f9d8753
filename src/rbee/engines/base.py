"""The Engine protocol every adapter implements.

Engines are synchronous and run on a worker thread; the worker bridges them to asyncio.
Cancellation is cooperative: the engine checks `cancel` between tokens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class GenerationRequest:
    kind: Literal["chat", "completion"]
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SamplingDefaults:
    """A model's own defaults for fields the request leaves out (Ollama's Modelfile PARAMETERs)."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    repeat_penalty: float = 1.1


@dataclass(frozen=True)
class Piece:
    """One streamed token's text."""

    text: str


@dataclass(frozen=True)
class Finish:
    """The last item of every generation."""

    reason: Literal["stop", "length", "cancelled"]
    prompt_tokens: int
    completion_tokens: int


Output = Piece | Finish


class Engine(Protocol):
    name: str
    # Requests it serves at once: the worker runs up to this many `generate` calls at the
    # same time, each on its own thread, and advertises it so the queen admits as many.
    slots: int

    def load(self, progress: ProgressFn) -> None:
        """Load weights; report progress in 0..1 with a stage name."""
        ...

    def generate(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Output]:
        """Yield Pieces, then exactly one Finish."""
        ...

    def close(self) -> None: ...


DEFAULT_MAX_TOKENS = 256
MAX_SLOTS = 1024  # a bound on what any worker may advertise (and a user may ask for)
