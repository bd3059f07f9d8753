"""The worker's /v1/audio/speech: audio in every format, streamed sentence by sentence; the
voice, input and format checked before anything is spoken; a worker of another kind saying
what it does."""

from __future__ import annotations

import io
import wave

import httpx
import pytest

from rbee.api.speech import PCM_RATE
from rbee.engines.fake import FakeEngine
from rbee.engines.fake_speech import RATE, FakeSpeaker, tone
from rbee.worker.app import create_app
from rbee.worker.runtime import Runtime

THREE = "One two. Three four five! Six?"


async def _client(engine: FakeSpeaker | FakeEngine) -> httpx.AsyncClient:
    runtime = Runtime(engine)
    await runtime.load_engine()
    app = create_app(runtime, model="voice")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")


def _speech(**fields: object) -> dict[str, object]:
    return {"model": "voice", "input": THREE, "voice": "bee", **fields}


def _samples_at_24k(text: str, speed: float = 1.0) -> int:
    """What the fake engine makes for `text`, counted at OpenAI's 24 kHz."""
    per_sentence = [sum(len(tone(w, "bee", speed)) // 2 for w in s.split())
                    for s in ("One two.", "Three four five!", "Six?")]
    return sum(round(n * PCM_RATE / RATE) for n in per_sentence)


async def test_wav_is_a_valid_24khz_mono_file_of_every_sentence() -> None:
    engine = FakeSpeaker()
    async with await _client(engine) as client:
        r = await client.post("/v1/audio/speech", json=_speech(response_format="wav"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    # a streamed WAV's header cannot know its length (OpenAI's neither): the data runs to
    # the end of the file
    data = r.content[44:]
    assert r.content[:4] == b"RIFF" and r.content[8:16] == b"WAVEfmt "
    with wave.open(io.BytesIO(r.content[:44] + b"")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, PCM_RATE)
    assert len(data) // 2 == _samples_at_24k(THREE)
    assert engine.spoken == ["One two.", "Three four five!", "Six?"]


async def test_pcm_is_the_same_samples_without_a_header() -> None:
    async with await _client(FakeSpeaker()) as client:
        wav = await client.post("/v1/audio/speech", json=_speech(response_format="wav"))
        pcm = await client.post("/v1/audio/speech", json=_speech(response_format="pcm"))
    assert pcm.headers["content-type"] == "audio/pcm"
    assert pcm.content == wav.content[44:]


async def test_speed_makes_it_shorter() -> None:
    async with await _client(FakeSpeaker()) as client:
        fast = await client.post("/v1/audio/speech", json=_speech(response_format="pcm",
                                                                  speed=2))
    assert len(fast.content) // 2 == _samples_at_24k(THREE, speed=2.0)


@pytest.mark.parametrize(("fmt", "media", "magic"), [
    ("mp3", "audio/mpeg", (b"ID3", b"\xff\xf3", b"\xff\xfb", b"\xff\xf2")),
    ("opus", "audio/ogg", (b"OggS",)), ("aac", "audio/aac", (b"\xff\xf1", b"\xff\xf9")),
    ("flac", "audio/flac", (b"fLaC",))])
async def test_compressed_formats_decode_to_about_the_right_length(
        fmt: str, media: str, magic: tuple[bytes, ...]) -> None:
    av = pytest.importorskip("av")
    async with await _client(FakeSpeaker()) as client:
        r = await client.post("/v1/audio/speech", json=_speech(response_format=fmt))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media
    assert r.content.startswith(magic)
    with av.open(io.BytesIO(r.content)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    expected = _samples_at_24k(THREE) * rate / PCM_RATE
    assert abs(samples - expected) < 0.1 * expected  # codecs pad and trim a little


async def test_openai_voice_names_mean_the_default_voice() -> None:
    async with await _client(FakeSpeaker()) as client:
        own = await client.post("/v1/audio/speech", json=_speech(response_format="pcm"))
        alloy = await client.post("/v1/audio/speech", json=_speech(response_format="pcm",
                                                                   voice="alloy"))
        drone = await client.post("/v1/audio/speech", json=_speech(response_format="pcm",
                                                                   voice="drone"))
    assert alloy.content == own.content
    assert drone.status_code == 200 and drone.content != own.content


async def test_an_unknown_voice_lists_the_voices_and_speaks_nothing() -> None:
    engine = FakeSpeaker()
    async with await _client(engine) as client:
        r = await client.post("/v1/audio/speech", json=_speech(voice="nobody"))
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "voice"
    assert "bee, drone" in error["message"] and "'nobody'" in error["message"]
    assert engine.spoken == []


@pytest.mark.parametrize(("fields", "param"), [
    ({"input": ""}, "input"), ({"input": "   "}, "input"), ({"input": "a" * 4097}, "input"),
    ({"input": 5}, "input"), ({"response_format": "ogg"}, "response_format"),
    ({"speed": 0.2}, "speed"), ({"speed": 4.5}, "speed"), ({"speed": "fast"}, "speed"),
    ({"voice": ""}, "voice"), ({"instructions": "whisper"}, "instructions"),
    ({"stream_format": "sse"}, "stream_format")])
async def test_bad_fields_are_a_400_naming_them(fields: dict[str, object], param: str) -> None:
    engine = FakeSpeaker()
    async with await _client(engine) as client:
        r = await client.post("/v1/audio/speech", json=_speech(**fields))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert engine.spoken == []


async def test_the_longest_input_is_spoken() -> None:
    async with await _client(FakeSpeaker()) as client:
        r = await client.post("/v1/audio/speech", json=_speech(input="la " * 1365,
                                                               response_format="pcm"))
    assert r.status_code == 200


async def test_a_chat_worker_says_what_it_does() -> None:
    async with await _client(FakeEngine()) as client:
        r = await client.post("/v1/audio/speech", json=_speech())
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "wrong_model_kind"
    assert "chat model" in r.json()["error"]["message"]


async def test_a_speech_worker_refuses_chat_and_embeddings() -> None:
    async with await _client(FakeSpeaker()) as client:
        chat = await client.post("/v1/chat/completions", json={
            "model": "voice", "messages": [{"role": "user", "content": "hi"}]})
        emb = await client.post("/v1/embeddings", json={"model": "voice", "input": "hi"})
    for r in (chat, emb):
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "wrong_model_kind"
        assert "/v1/audio/speech" in r.json()["error"]["message"]
