"""The fake transcription engine: a sentence per second by loudness, word timestamps when
asked, a stop between segments once cancelled."""

from __future__ import annotations

import threading
from array import array

from rbee.engines.base import TranscriptionOptions
from rbee.engines.fake_transcription import FakeTranscriber


def _pcm(*levels: float, seconds: float = 1.0) -> bytes:
    out = array("h")
    for level in levels:
        out.extend([round(level * 32767), -round(level * 32767)] * int(8000 * seconds))
    return out.tobytes()


def test_a_sentence_per_second_by_loudness() -> None:
    segments = list(FakeTranscriber().transcribe(_pcm(0.5, 0.01, 0.0), TranscriptionOptions(),
                                                 threading.Event()))
    assert [s.text for s in segments] == [" Second 1 is loud.", " Second 2 is quiet.",
                                          " Second 3 is silent."]
    assert [(s.start, s.end) for s in segments] == [(0, 1), (1, 2), (2, 3)]
    assert all(not s.words and s.language == "en" for s in segments)


def test_words_a_partial_second_and_translation() -> None:
    options = TranscriptionOptions(task="translate", language="fr", words=True)
    [segment] = FakeTranscriber().transcribe(_pcm(0.5, seconds=0.5), options,
                                             threading.Event())
    assert segment.text == " (from fr) Second 1 is loud."
    assert segment.end == 0.5
    assert [w.word for w in segment.words] == [" (from", " fr)", " Second", " 1", " is",
                                               " loud."]
    assert segment.words[-1].end == 0.5


def test_cancel_stops_between_segments() -> None:
    cancel = threading.Event()
    made = []
    for segment in FakeTranscriber().transcribe(_pcm(0.5, 0.5, 0.5), TranscriptionOptions(),
                                                cancel):
        made.append(segment)
        cancel.set()
    assert len(made) == 1
