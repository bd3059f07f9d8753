"""/v1/audio/speech through the queen with the official client, against real daemons (the
fake speech engine): whole and streamed answers, audio that leaves before the last sentence is
made, kinds, and bad input."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from rbee.client import QueenClient
from rbee.core.errors import InvalidRequest
from tests.support.daemons import Daemon, rbee_env, run_cli, running_queen

pytestmark = pytest.mark.e2e
MODEL = "rbee-fake-speech"
TEXT = "One two. Three four five! Six?"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake engine's last sentence waits for this file; open unless a test shuts it."""
    path = tmp_path_factory.mktemp("gate") / "open"
    path.touch()
    return path


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory, gate: Path) -> Iterator[Daemon]:
    env = rbee_env(tmp_path_factory.mktemp("rbee"), RBEE_WORKER_FAKE_SPEECH_GATE=str(gate))
    yield from running_queen(env)


@pytest.fixture
def client(queen: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{queen.url}/v1", api_key="unused", max_retries=0)


def test_the_sdk_gets_a_valid_wav(client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model=MODEL, voice="alloy", input=TEXT,
                                       response_format="wav")
    raw = audio.content
    with wave.open(io.BytesIO(raw[:44])) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24_000)
    # six words of 0.12 s each at 24 kHz, 16 bits
    assert abs(len(raw[44:]) / 2 / 24_000 - 6 * 0.12) < 0.01


def test_streamed_audio_leaves_before_the_last_sentence_is_made(
        client: openai.OpenAI, gate: Path) -> None:
    gate.unlink()
    try:
        with client.audio.speech.with_streaming_response.create(
                model=MODEL, voice="bee", input=TEXT, response_format="pcm") as response:
            assert response.headers["content-type"] == "audio/pcm"
            chunks = response.iter_bytes(chunk_size=None)  # as they arrive
            first = next(chunks)
            # The last sentence cannot be made while the gate is shut: these bytes came
            # through the queen before it was.
            assert first
            gate.touch()
            rest = b"".join(chunks)
    finally:
        gate.touch()
    whole = client.audio.speech.create(model=MODEL, voice="bee", input=TEXT,
                                       response_format="pcm").content
    assert first + rest == whole


def test_mp3_by_default_as_openai(client: openai.OpenAI) -> None:
    pytest.importorskip("av")
    audio = client.audio.speech.create(model=MODEL, voice="bee", input="Hello there.")
    assert audio.response.headers["content-type"] == "audio/mpeg"
    assert audio.content[:3] == b"ID3" or audio.content[:1] == b"\xff"


def test_models_say_speech(queen: Daemon) -> None:
    cards = {m["id"]: m for m in httpx.get(f"{queen.url}/v1/models").json()["data"]}
    assert cards[MODEL]["kind"] == "speech"
    assert cards["piper-joe"]["kind"] == "speech"


@pytest.mark.parametrize(("fields", "param"), [
    ({"voice": "nobody"}, "voice"), ({"input": ""}, "input"), ({"input": "a" * 4097}, "input"),
    ({"response_format": "ogg"}, "response_format"), ({"speed": 9}, "speed")])
def test_bad_input_is_a_400_naming_the_field(client: openai.OpenAI, fields: dict[str, object],
                                              param: str) -> None:
    args: dict[str, object] = {"model": MODEL, "voice": "bee", "input": TEXT, **fields}
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(**args)  # type: ignore[arg-type]
    assert err.value.param == param
    if param == "voice":
        assert "bee, drone" in str(err.value)


def test_wrong_kinds_both_ways(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as speech:
        client.audio.speech.create(model="rbee-fake", voice="bee", input=TEXT)
    assert speech.value.code == "wrong_model_kind"
    assert "chat model" in str(speech.value)
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert chat.value.code == "wrong_model_kind"
    assert "speech model" in str(chat.value)


@pytest.mark.parametrize("body", [b"[]", b'{"model": "rbee-fake-speech"}', b"\x00\xff",
                                  b'{"model": "rbee-fake-speech", "input": {"a": 1}, '
                                  b'"voice": "bee"}', b'{"model": 5, "input": "x", "voice": 1}'])
def test_hostile_bodies(queen: Daemon, body: bytes) -> None:
    r = httpx.post(f"{queen.url}/v1/audio/speech", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_a_form_body_is_refused(queen: Daemon) -> None:
    r = httpx.post(f"{queen.url}/v1/audio/speech", data={"model": MODEL, "input": "x"})
    assert r.status_code == 415


def test_the_cli_streams_speech_into_a_file(queen: Daemon, tmp_path: Path) -> None:
    env = queen.env
    out = tmp_path / "hello.wav"
    r = run_cli(env, "speak", TEXT, "-o", str(out), "-m", MODEL, "--voice", "bee", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["format"] == "wav" and summary["bytes"] == out.stat().st_size
    assert abs(summary["audio_seconds"] - 6 * 0.12) < 0.01
    with wave.open(io.BytesIO(out.read_bytes()[:44])) as w:
        assert w.getframerate() == 24_000
    human = run_cli(env, "speak", "Hi.", "-o", str(tmp_path / "hi.pcm"), "-m", MODEL)
    assert human.returncode == 0 and "wrote" in human.stderr
    assert (tmp_path / "hi.pcm").stat().st_size == round(0.12 * 24_000) * 2
    bad = run_cli(env, "speak", "Hi.", "-o", str(tmp_path / "no.wav"), "-m", MODEL,
                  "--voice", "nobody")
    assert bad.returncode != 0 and "bee, drone" in bad.stderr
    wrong = run_cli(env, "speak", "Hi.", "-o", str(tmp_path / "no.wav"), "-m", "rbee-fake")
    assert wrong.returncode != 0 and "chat model" in wrong.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.wav", "hi.pcm"]


def test_a_speak_job_stores_its_audio_as_an_artifact(queen: Daemon,
                                                      client: openai.OpenAI) -> None:
    with QueenClient(queen.url) as jobs:
        job = jobs.submit("speak", model=MODEL, voice="alloy", input=TEXT,
                          response_format="wav")
        events = list(jobs.follow(job))
        for fields, param in (({"input": " "}, "input"), ({"response_format": "ogg"},
                                                          "response_format"),
                              ({"speed": 9.0}, "speed"), ({"stream_format": "sse"},
                                                          "stream_format")):
            with pytest.raises(InvalidRequest) as bad:
                jobs.submit("speak", **{"model": MODEL, "voice": "alloy", "input": TEXT,
                                        **fields})
            assert bad.value.param == param
    assert any(e.event == "narration" and "first audio" in e.data["message"] for e in events)
    assert all("b64" not in json.dumps(e.data) for e in events)
    [result] = [e.data for e in events if e.event == "result"]
    assert result["url"] == f"/v1/artifacts/{result['artifact_id']}"
    assert result["media_type"] == "audio/wav" and result["timings"]["first_audio_ms"] > 0
    stored = httpx.get(f"{queen.url}{result['url']}", timeout=5)
    direct = client.audio.speech.create(model=MODEL, voice="alloy", input=TEXT,
                                        response_format="wav").content
    assert len(stored.content) == result["bytes"]
    with wave.open(io.BytesIO(stored.content)) as w, wave.open(io.BytesIO(direct)) as d:
        assert w.readframes(len(direct)) == d.readframes(len(direct))  # the endpoint's audio
