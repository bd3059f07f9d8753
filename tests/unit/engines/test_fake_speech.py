"""The fake speech engine: deterministic tones, one chunk per sentence, speed and voices."""

from __future__ import annotations

import threading

from rbee.engines.fake_speech import RATE, FakeSpeaker, sentences, tone


def _speak(text: str, voice: str = "bee", speed: float = 1.0) -> list[bytes]:
    return list(FakeSpeaker().speak(text, voice, speed, threading.Event()))


def test_one_chunk_per_sentence() -> None:
    assert sentences("Hi. How are you?  Fine!\nGood") == ["Hi.", "How are you?", "Fine!", "Good"]
    chunks = _speak("Hi there. Bye.")
    assert [len(c) // 2 for c in chunks] == [2 * round(RATE * 0.12), round(RATE * 0.12)]


def test_deterministic_and_voiced() -> None:
    assert _speak("a b. c") == _speak("a b. c")
    assert _speak("a", voice="drone") != _speak("a")
    assert tone("A", "bee", 1.0) == tone("a", "bee", 1.0)


def test_speed_shortens() -> None:
    assert len(_speak("a b", speed=2.0)[0]) == len(_speak("a b")[0]) // 2


def test_cancel_stops_between_sentences() -> None:
    cancel = threading.Event()
    engine = FakeSpeaker()
    for _ in engine.speak("a. b. c.", "bee", 1.0, cancel):
        cancel.set()
    assert engine.spoken == ["a."]
