"""The built-in voice (Piper, en_US joe) through the queen, with the official client: a valid
WAV of plausible length, streamed sentence by sentence, the SDK's own model and voice names,
mp3, and the voice list in a 400."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator

import openai
import pytest

from rbee.models.catalog import builtin_path
from tests.support.daemons import Daemon, rbee_env, running_queen

pytestmark = [pytest.mark.e2e, pytest.mark.model]
MODEL = "piper-joe"
TEXT = ("The queen routes every request to a worker. The worker speaks it aloud, one "
        "sentence at a time. Nothing leaves this machine.")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    if builtin_path(MODEL) is None:
        pytest.skip("piper-joe is not installed (scripts/install.sh installs it)")
    queen: Daemon
    for queen in running_queen(rbee_env(tmp_path_factory.mktemp("piper"))):
        yield openai.OpenAI(base_url=f"{queen.url}/v1", api_key="unused", max_retries=0,
                            timeout=120)


def _seconds(wav: bytes) -> float:
    with wave.open(io.BytesIO(wav[:44])) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24_000)
    return len(wav[44:]) / 2 / 24_000


def test_a_valid_wav_of_plausible_length(client: openai.OpenAI) -> None:
    wav = client.audio.speech.create(model=MODEL, voice="joe", input=TEXT,
                                     response_format="wav").content
    seconds = _seconds(wav)
    words = len(TEXT.split())
    assert words / 4.5 < seconds < words / 1.2  # 1.2 to 4.5 words a second: speech
    # not silence: the samples' RMS is well above the noise floor
    samples = memoryview(wav[44:]).cast("h")
    rms = (sum(s * s for s in samples) / len(samples)) ** 0.5
    assert rms > 500
    faster = client.audio.speech.create(model=MODEL, voice="joe", input=TEXT,
                                        response_format="wav", speed=2.0).content
    assert _seconds(faster) < 0.65 * seconds


def test_streamed_in_more_than_one_piece_with_openai_names(client: openai.OpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TEXT, response_format="pcm") as response:
        pieces = [p for p in response.iter_bytes(chunk_size=None) if p]
    assert len(pieces) >= 2  # one or more per sentence, as they were made
    assert 2 < len(b"".join(pieces)) / 2 / 24_000 < 20


def test_mp3(client: openai.OpenAI) -> None:
    av = pytest.importorskip("av")
    mp3 = client.audio.speech.create(model=MODEL, voice="joe", input="Hello there.").content
    with av.open(io.BytesIO(mp3)) as container:
        seconds = sum(f.samples for f in container.decode(audio=0)) / 24_000
    assert 0.3 < seconds < 3


def test_an_unknown_voice_lists_joe(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model=MODEL, voice="nobody", input="Hi.")
    assert err.value.param == "voice" and "joe" in str(err.value)
