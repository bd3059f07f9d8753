"""The built-in voice and the built-in Whisper through the queen, on two workers, with the
official client: Piper speaks a sentence, Whisper tiny.en writes it back word for word.
Also the real engine's segments, word timestamps, streamed events, an mp3 upload, a
language it cannot read, and the uploads gone afterwards."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from rbee.client import QueenClient
from rbee.models.catalog import builtin_path
from tests.support.audio import reencode
from tests.support.daemons import Daemon, rbee_env, running_queen

pytestmark = [pytest.mark.e2e, pytest.mark.model]
SENTENCE = "Hello world, the orchestrator is running three workers."


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory, spool: Path) -> Iterator[Daemon]:
    for name in ("piper-joe", "whisper-tiny-en"):
        if builtin_path(name) is None:
            pytest.skip(f"{name} is not installed (scripts/install.sh installs it)")
    pytest.importorskip("faster_whisper")
    yield from running_queen(rbee_env(tmp_path_factory.mktemp("stt"),
                                      RBEE_QUEEN_UPLOAD_DIR=str(spool)))


@pytest.fixture(scope="module")
def client(queen: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{queen.url}/v1", api_key="unused", max_retries=0,
                         timeout=180)


@pytest.fixture(scope="module")
def spoken(client: openai.OpenAI) -> bytes:
    return client.audio.speech.create(model="piper-joe", voice="joe", input=SENTENCE,
                                      response_format="wav").content


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()


def test_round_trip_word_for_word_on_two_workers(client: openai.OpenAI, spoken: bytes,
                                                 queen: Daemon, spool: Path) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", spoken))
    assert _words(result.text) == _words(SENTENCE)
    rows = httpx.get(f"{queen.url}/v1/workers", timeout=30).json()
    kinds = {w["kind"]: w["id"] for w in rows}
    assert {"speech", "transcription"} <= kinds.keys()
    assert kinds["speech"] != kinds["transcription"]
    assert not any(spool.iterdir())


def test_verbose_json_segments_and_words(client: openai.OpenAI, spoken: bytes) -> None:
    v = client.audio.transcriptions.create(model="whisper-tiny-en", file=("s.wav", spoken),
                                           response_format="verbose_json",
                                           timestamp_granularities=["word"])
    assert v.language == "english" and 2.0 < v.duration < 8.0
    assert v.segments and v.segments[0].start < v.segments[-1].end <= v.duration + 0.5
    words = v.words or []
    assert _words(" ".join(w.word for w in words)) == _words(SENTENCE)
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    srt = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", spoken),
                                             response_format="srt")
    assert srt.startswith("1\n00:00:0") and "-->" in srt


def test_streamed_mp3(client: openai.OpenAI, spoken: bytes) -> None:
    pytest.importorskip("av")
    mp3 = reencode(spoken, "mp3")
    events = list(client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("s.mp3", mp3), stream=True, language="en"))
    assert events[0].type == "transcript.text.delta" and events[-1].type == (
        "transcript.text.done")
    assert _words(events[-1].text) == _words(SENTENCE)  # type: ignore[union-attr]


def test_translation_of_english_is_its_transcript_and_other_languages_are_refused(
        client: openai.OpenAI, spoken: bytes) -> None:
    with pytest.warns(DeprecationWarning):  # the SDK marks audio.translations deprecated
        translated = client.audio.translations.create(model="whisper-1",
                                                      file=("s.wav", spoken))
    assert _words(translated.text) == _words(SENTENCE)
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=("s.wav", spoken),
                                           language="fr")
    assert err.value.param == "language" and "reads en" in str(err.value)


def test_chunking_auto_cuts_at_silences_first(client: openai.OpenAI, spoken: bytes) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", spoken),
                                                chunking_strategy="auto")
    assert _words(result.text) == _words(SENTENCE)


def test_a_ctranslate2_whisper_folder_by_file_ref(client: openai.OpenAI, spoken: bytes,
                                                  tmp_path: Path) -> None:
    model_bin = builtin_path("whisper-tiny-en")
    assert model_bin is not None
    folder = tmp_path / "faster-whisper-tiny.en"  # a folder named for what it holds
    folder.symlink_to(model_bin.parent, target_is_directory=True)
    for ref in (f"file:{folder}", f"file:{model_bin}"):
        result = client.audio.transcriptions.create(model=ref, file=("s.wav", spoken))
        assert _words(result.text) == _words(SENTENCE), ref
    with pytest.raises(openai.NotFoundError) as err:
        client.audio.transcriptions.create(model=f"file:{tmp_path}/whisper-none",
                                           file=("s.wav", spoken))
    assert err.value.body["param"] == "model"  # type: ignore[index]


def test_round_trip_as_jobs_speak_then_transcribe_the_stored_file(
        client: openai.OpenAI, queen: Daemon) -> None:
    """Piper's audio stored by a `speak` job, uploaded as a file, transcribed by a
    `transcribe` job: the job API's binary results, with the built-in models."""
    with QueenClient(queen.url, timeout=180) as jobs:
        spoke = [e.data for e in jobs.follow(jobs.submit(
            "speak", model="piper-joe", voice="joe", input=SENTENCE, response_format="wav"))
            if e.event == "result"]
        wav = b"".join(jobs.download(spoke[0]["url"]))
        uploaded = client.files.create(file=("spoken.wav", wav, "audio/wav"),
                                       purpose="user_data")
        written = [e.data for e in jobs.follow(jobs.submit(
            "transcribe", model="whisper-tiny-en", file_id=uploaded.id,
            response_format="text")) if e.event == "result"]
    assert len(wav) == spoke[0]["bytes"] and wav.startswith(b"RIFF")
    assert _words(written[0]["transcript"]) == _words(SENTENCE)
    assert client.files.delete(uploaded.id).deleted
