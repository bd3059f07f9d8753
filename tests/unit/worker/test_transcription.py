"""The worker's /v1/audio/transcriptions and /translations (fake engine): every format, the
stream's events, containers decoded, and bad input a 400 naming its param with nothing left
on disk."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from rbee.api.transcription import MAX_AUDIO_FIELD
from rbee.engines.fake import FakeEngine
from rbee.engines.fake_transcription import FakeTranscriber
from rbee.worker.app import create_app
from rbee.worker.runtime import Runtime
from rbee.worker.transcription import Limits
from tests.support.audio import reencode, tone_wav

LOUD_QUIET_LOUD = tone_wav([0.5, 0.005, 0.5])
TEXT = "Second 1 is loud. Second 2 is quiet. Second 3 is loud."


async def _client(engine: FakeTranscriber | FakeEngine, spool: Path, *,
                  max_bytes: int = 1 << 20, max_seconds: float = 60.0) -> httpx.AsyncClient:
    runtime = Runtime(engine)
    await runtime.load_engine()
    app = create_app(runtime, model="ears", uploads=Limits(spool, max_bytes, max_seconds))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")


def _empty(folder: Path) -> bool:
    return not any(folder.iterdir())


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


async def _post(client: httpx.AsyncClient, audio: bytes = LOUD_QUIET_LOUD,
                path: str = "/v1/audio/transcriptions", name: str = "a.wav",
                **fields: str | list[str]) -> httpx.Response:
    data = {"model": "ears", **fields}
    return await client.post(path, data=data, files={"file": (name, audio, "audio/wav")})


async def test_json_is_the_text_and_the_seconds_used(spool: Path) -> None:
    async with await _client(FakeTranscriber(), spool) as client:
        r = await _post(client)
    assert r.status_code == 200, r.text
    assert r.json() == {"text": TEXT, "usage": {"type": "duration", "seconds": 3}}
    assert _empty(spool)  # the upload is gone once decoded


async def test_text_srt_and_vtt(spool: Path) -> None:
    async with await _client(FakeTranscriber(), spool) as client:
        text = await _post(client, response_format="text")
        srt = await _post(client, response_format="srt")
        vtt = await _post(client, response_format="vtt")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == TEXT + "\n"
    assert srt.text.startswith("1\n00:00:00,000 --> 00:00:01,000\nSecond 1 is loud.\n\n2\n"
                               "00:00:01,000 --> 00:00:02,000\nSecond 2 is quiet.\n\n")
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nSecond 1 is loud.\n")


async def test_verbose_json_has_segments_and_words_when_asked(spool: Path) -> None:
    engine = FakeTranscriber()
    async with await _client(engine, spool) as client:
        plain = await _post(client, response_format="verbose_json")
        words = await _post(client, response_format="verbose_json", language="en",
                            temperature="0.3", prompt="Seconds.",
                            **{"timestamp_granularities[]": ["word", "segment"]})
    body = plain.json()
    assert (body["task"], body["language"], body["duration"]) == ("transcribe", "english", 3.0)
    assert [s["text"] for s in body["segments"]] == [
        " Second 1 is loud.", " Second 2 is quiet.", " Second 3 is loud."]
    assert [(s["start"], s["end"]) for s in body["segments"]] == [(0, 1), (1, 2), (2, 3)]
    assert "words" not in body
    worded = words.json()
    assert [w["word"] for w in worded["words"][:4]] == ["Second", "1", "is", "loud."]
    assert worded["words"][3]["end"] == 1.0
    options = engine.seen[-1]
    assert (options.language, options.temperature, options.prompt, options.words) == (
        "en", 0.3, "Seconds.", True)
    assert not options.vad and engine.seen[0].vad is False
    async with await _client(engine, spool) as client:
        await _post(client, chunking_strategy="auto")
    assert engine.seen[-1].vad


async def test_stream_sends_a_delta_per_segment_then_done(spool: Path) -> None:
    async with await _client(FakeTranscriber(), spool) as client:
        r = await _post(client, stream="true")
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    events = [json.loads(f) for f in frames[:-1]]
    assert [e["type"] for e in events] == ["transcript.text.delta"] * 3 + [
        "transcript.text.done"]
    assert "".join(e["delta"] for e in events[:3]) == events[-1]["text"] == TEXT


@pytest.mark.parametrize("container", ["mp3", "ogg", "flac", "webm", "m4a"])
async def test_every_common_container_is_decoded(spool: Path, container: str) -> None:
    audio = reencode(LOUD_QUIET_LOUD, container)
    async with await _client(FakeTranscriber(), spool) as client:
        r = await _post(client, audio, name=f"a.{container}")
    assert r.status_code == 200, r.text
    # AAC's encoder pads the end (8 ms here): the fake hears that as one more second
    assert r.json()["text"].startswith(TEXT)


async def test_translation_of_french_says_so_and_english_is_the_transcript(
        spool: Path) -> None:
    engine = FakeTranscriber()
    async with await _client(engine, spool) as client:
        r = await _post(client, path="/v1/audio/translations")
        lang = await _post(client, path="/v1/audio/translations", language="fr")
    # OpenAI's translation answer has no usage; rbee's carries the seconds it charges
    assert r.json() == {"text": TEXT, "usage": {"type": "duration", "seconds": 3}}
    assert engine.seen[-1].task == "translate"
    assert lang.status_code == 400 and lang.json()["error"]["param"] == "language"


@pytest.mark.parametrize(("audio", "fields", "param"), [
    (b"", {}, "file"),  # empty
    (b"RIFF\x00\x00garbage" * 100, {}, "file"),  # corrupt
    (b"\x00" * 5000, {}, "file"),  # no container at all
    (LOUD_QUIET_LOUD, {"language": "de"}, "language"),  # a language it does not read
    (LOUD_QUIET_LOUD, {"language": "english"}, "language"),  # not a code
    (LOUD_QUIET_LOUD, {"response_format": "docx"}, "response_format"),
    (LOUD_QUIET_LOUD, {"temperature": "1.5"}, "temperature"),
    (LOUD_QUIET_LOUD, {"temperature": "hot"}, "temperature"),
    (LOUD_QUIET_LOUD, {"stream": "true", "response_format": "srt"}, "stream"),
    (LOUD_QUIET_LOUD, {"timestamp_granularities[]": "word"}, "timestamp_granularities"),
    (LOUD_QUIET_LOUD, {"include[]": "logprobs"}, "include"),
    (LOUD_QUIET_LOUD, {"prompt": "x" * 5000}, "prompt"),
    (LOUD_QUIET_LOUD, {"chunking_strategy": '{"type": "server_vad"}'}, "chunking_strategy"),
    (LOUD_QUIET_LOUD, {"known_speaker_names[]": "ann"}, "known_speaker_names"),
    (LOUD_QUIET_LOUD, {"languages[]": "en"}, "languages"),
])
async def test_bad_input_is_a_400_naming_its_param(
        spool: Path, audio: bytes, fields: dict[str, str], param: str) -> None:
    async with await _client(FakeTranscriber(), spool) as client:
        r = await _post(client, audio, **fields)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert _empty(spool)


async def test_no_file_and_no_form(spool: Path) -> None:
    async with await _client(FakeTranscriber(), spool) as client:
        no_file = await client.post("/v1/audio/transcriptions", data={"model": "ears"},
                                    files={"other": ("x", b"1")})
        as_json = await client.post("/v1/audio/transcriptions", json={"model": "ears"})
        cut = await client.post("/v1/audio/transcriptions", content=b"--b\r\nContent-Dis",
                                headers={"content-type": "multipart/form-data; boundary=b"})
    assert (no_file.status_code, no_file.json()["error"]["param"]) == (400, "other")
    assert (as_json.status_code, as_json.json()["error"]["param"]) == (415, "Content-Type")
    assert (cut.status_code, cut.json()["error"]["param"]) == (400, "file")
    assert _empty(spool)


async def test_too_large_is_a_413_and_too_long_a_400(spool: Path) -> None:
    async with await _client(FakeTranscriber(), spool, max_bytes=50_000,
                             max_seconds=2.5) as client:
        big = await _post(client, tone_wav([0.5] * 2))  # 64 KB
        long = await client.post("/v1/audio/transcriptions",
                                 data={"model": "ears", MAX_AUDIO_FIELD: "0.5"},
                                 files={"file": ("a.wav", tone_wav([0.5]), "audio/wav")})
    assert (big.status_code, big.json()["error"]["code"]) == (413, "body_too_large")
    assert big.json()["error"]["param"] == "file"
    assert (long.status_code, long.json()["error"]["param"]) == (400, "file")
    assert "longer than 0.5 seconds" in long.json()["error"]["message"]
    assert _empty(spool)


async def test_a_chat_worker_says_what_it_does(spool: Path) -> None:
    async with await _client(FakeEngine(), spool) as client:
        r = await _post(client)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "wrong_model_kind"
    assert _empty(spool)
