from __future__ import annotations

import threading

import pytest

from rbee.core.errors import EngineError
from rbee.engines.base import Finish, GenerationRequest, Piece
from rbee.engines.fake import FakeEngine


def run(engine: FakeEngine, req: GenerationRequest, cancel: threading.Event | None = None
        ) -> tuple[list[str], Finish]:
    out = list(engine.generate(req, cancel or threading.Event()))
    pieces = [p.text for p in out if isinstance(p, Piece)]
    finish = out[-1]
    assert isinstance(finish, Finish) and all(isinstance(p, Piece) for p in out[:-1])
    return pieces, finish


def test_deterministic_and_bounded() -> None:
    req = GenerationRequest(kind="completion", prompt="hi there", max_tokens=5, seed=1)
    a, fa = run(FakeEngine(), req)
    b, _ = run(FakeEngine(), req)
    assert a == b and len(a) == 5 and fa.reason == "length" and fa.completion_tokens == 5
    assert fa.prompt_tokens == 2


def test_stop_sequence() -> None:
    base = GenerationRequest(kind="completion", prompt="x", max_tokens=10, seed=4)
    pieces, _ = run(FakeEngine(), base)
    req = GenerationRequest(kind="completion", prompt="x", max_tokens=10, seed=4,
                            stop=[pieces[2].strip()])
    cut, finish = run(FakeEngine(), req)
    assert finish.reason == "stop" and len(cut) <= 2


def test_cancel_stops_between_tokens() -> None:
    cancel = threading.Event()
    cancel.set()
    pieces, finish = run(FakeEngine(), GenerationRequest(kind="chat", max_tokens=50), cancel)
    assert pieces == [] and finish.reason == "cancelled"


def test_failure_injection() -> None:
    with pytest.raises(EngineError):
        run(FakeEngine(fail_after=2), GenerationRequest(kind="chat", max_tokens=5))
    with pytest.raises(EngineError):
        FakeEngine(fail_load=True).load(lambda f, s: None)
