"""/v1/audio/transcriptions and /translations through the queen with the official client,
against real daemons (the fake transcription engine): every format, streamed events,
containers, kinds both ways, bad input, and no upload left on disk afterwards."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from rbee.client import QueenClient
from rbee.core.errors import RbeeError
from tests.support.audio import reencode, tone_wav
from tests.support.daemons import Daemon, rbee_env, run_cli, running_queen

pytestmark = pytest.mark.e2e
MODEL = "rbee-fake-transcription"
AUDIO = tone_wav([0.5, 0.005, 0.5])
TEXT = "Second 1 is loud. Second 2 is quiet. Second 3 is loud."
MAX_UPLOAD = 200_000


@pytest.fixture(scope="module")
def spools(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("spools")
    return root / "queen", root / "worker"


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory, spools: tuple[Path, Path]
          ) -> Iterator[Daemon]:
    spools[1].mkdir(parents=True)
    env = rbee_env(tmp_path_factory.mktemp("rbee"), RBEE_QUEEN_UPLOAD_DIR=str(spools[0]),
                   RBEE_QUEEN_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
                   RBEE_QUEEN_MAX_AUDIO_SECONDS="4", RBEE_WORKER_UPLOAD_DIR=str(spools[1]))
    yield from running_queen(env)


@pytest.fixture
def client(queen: Daemon, spools: tuple[Path, Path]) -> Iterator[openai.OpenAI]:
    yield openai.OpenAI(base_url=f"{queen.url}/v1", api_key="unused", max_retries=0)
    # Whatever the test did, no upload is left behind on either side.
    assert [list(p.iterdir()) for p in spools] == [[], []]


def _file(data: bytes = AUDIO, name: str = "a.wav") -> tuple[str, bytes, str]:
    return (name, data, "audio/wav")


def test_json_through_the_sdk(client: openai.OpenAI) -> None:
    result = client.audio.transcriptions.create(model=MODEL, file=_file())
    assert result.text == TEXT


def test_every_format(client: openai.OpenAI) -> None:
    text = client.audio.transcriptions.create(model=MODEL, file=_file(),
                                              response_format="text")
    assert text == TEXT + "\n"
    srt = client.audio.transcriptions.create(model=MODEL, file=_file(), response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,000\nSecond 1 is loud.\n")
    vtt = client.audio.transcriptions.create(model=MODEL, file=_file(), response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n")
    verbose = client.audio.transcriptions.create(
        model=MODEL, file=_file(), response_format="verbose_json",
        timestamp_granularities=["word", "segment"], language="en", prompt="Seconds.",
        temperature=0.2)
    assert verbose.duration == 3.0 and verbose.language == "english"
    assert [s.text for s in verbose.segments or []][1] == " Second 2 is quiet."
    assert [w.word for w in verbose.words or []][:4] == ["Second", "1", "is", "loud."]


def test_stream_events_as_the_sdk_expects(client: openai.OpenAI) -> None:
    events = list(client.audio.transcriptions.create(model=MODEL, file=_file(), stream=True))
    assert [e.type for e in events] == ["transcript.text.delta"] * 3 + ["transcript.text.done"]
    assert "".join(e.delta for e in events[:3]) == events[-1].text == TEXT  # type: ignore[union-attr]


@pytest.mark.parametrize("container", ["mp3", "ogg", "flac", "webm"])
def test_containers(client: openai.OpenAI, container: str) -> None:
    data = reencode(AUDIO, container)
    result = client.audio.transcriptions.create(model=MODEL, file=(f"a.{container}", data))
    assert result.text.startswith(TEXT)


def test_translation(client: openai.OpenAI) -> None:
    with pytest.warns(DeprecationWarning):  # the SDK marks audio.translations deprecated
        result = client.audio.translations.create(model=MODEL, file=_file())
    assert result.text == TEXT


def test_models_say_transcription(queen: Daemon) -> None:
    cards = {m["id"]: m for m in httpx.get(f"{queen.url}/v1/models").json()["data"]}
    assert cards[MODEL]["kind"] == "transcription"
    assert cards["whisper-tiny-en"]["kind"] == "transcription"


def test_wrong_kinds_both_ways(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as audio:
        client.audio.transcriptions.create(model="rbee-fake", file=_file())
    assert audio.value.code == "wrong_model_kind" and "chat model" in str(audio.value)
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert chat.value.code == "wrong_model_kind" and "transcription model" in str(chat.value)


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"file": _file(b"")}, "file"),
    ({"file": _file(b"RIFF....WAVEfmt garbage" * 50)}, "file"),
    ({"file": _file(tone_wav([0.5] * 5))}, "file"),  # 5 s: over max_audio_seconds 4
    ({"language": "de"}, "language"),
    ({"response_format": "docx"}, "response_format"),
    ({"temperature": 3}, "temperature"),
    ({"model": "no-such-model"}, "model"),
])
def test_bad_input_names_its_param(client: openai.OpenAI, kwargs: dict[str, object],
                                   param: str) -> None:
    args: dict[str, object] = {"model": MODEL, "file": _file(), **kwargs}
    with pytest.raises(openai.APIStatusError) as err:
        client.audio.transcriptions.create(**args)  # type: ignore[call-overload]
    assert err.value.status_code in (400, 404)
    assert err.value.body["param"] == param  # type: ignore[index]


def test_a_huge_upload_is_a_413(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.audio.transcriptions.create(model=MODEL, file=_file(b"\0" * (MAX_UPLOAD + 1)))
    assert err.value.status_code == 413
    assert err.value.body["param"] == "file"  # type: ignore[index]


def test_not_a_form_and_missing_fields(queen: Daemon, spools: tuple[Path, Path]) -> None:
    url = f"{queen.url}/v1/audio/transcriptions"
    as_json = httpx.post(url, json={"model": MODEL})
    no_file = httpx.post(url, data={"model": MODEL}, files={"x": ("x", b"1")})
    no_model = httpx.post(url, files={"file": ("a.wav", AUDIO)})
    only_file = httpx.post(url, data={"model": MODEL, "stream": "maybe"},
                           files={"file": ("a.wav", io.BytesIO(AUDIO))})
    assert (as_json.status_code, as_json.json()["error"]["param"]) == (415, "Content-Type")
    assert (no_file.status_code, no_file.json()["error"]["param"]) == (400, "x")
    assert (no_model.status_code, no_model.json()["error"]["param"]) == (400, "model")
    assert (only_file.status_code, only_file.json()["error"]["param"]) == (400, "stream")
    assert [list(p.iterdir()) for p in spools] == [[], []]


def test_the_cli_transcribes_a_file(queen: Daemon, tmp_path: Path,
                                    spools: tuple[Path, Path]) -> None:
    audio = tmp_path / "three.wav"
    audio.write_bytes(AUDIO)
    r = run_cli(queen.env, "transcribe", str(audio), "-m", MODEL, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["text"] == TEXT and summary["format"] == "json"
    srt = run_cli(queen.env, "transcribe", str(audio), "-m", MODEL, "--format", "srt")
    assert srt.returncode == 0 and srt.stdout.startswith("1\n00:00:00,000 --> ")
    bad = run_cli(queen.env, "transcribe", str(audio), "-m", MODEL, "--language", "de")
    assert bad.returncode != 0 and "language" in bad.stderr and len(bad.stderr.splitlines()) == 1
    wrong = run_cli(queen.env, "transcribe", str(audio), "-m", "rbee-fake")
    assert wrong.returncode != 0 and "chat model" in wrong.stderr
    missing = run_cli(queen.env, "transcribe", str(tmp_path / "none.wav"), "-m", MODEL)
    assert missing.returncode != 0 and "no such file" in missing.stderr
    assert [list(p.iterdir()) for p in spools] == [[], []]


def _raw_upload(queen: Daemon, head_extra: str, body: bytes) -> socket.socket:
    """A hand-made upload on a raw socket: its body is `body` (what the test sends)."""
    host, port = queen.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall((f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\n"
                  "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n"
                  f"{head_extra}\r\n").encode() + body)
    return sock


FORM_START = (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\n' + MODEL.encode()
              + b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"'
              b"\r\nContent-Type: audio/wav\r\n\r\n" + AUDIO[:20_000])


def _response(sock: socket.socket) -> str:
    """One whole HTTP response (headers and body may come in separate segments)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode("latin-1")


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _until_empty(spools: tuple[Path, Path]) -> list[list[Path]]:
    for _ in range(100):
        left = [list(p.iterdir()) for p in spools]
        if left == [[], []]:
            break
        time.sleep(0.05)
    return left


def test_a_client_that_hangs_up_mid_upload_leaves_nothing(queen: Daemon,
                                                          spools: tuple[Path, Path]) -> None:
    sock = _raw_upload(queen, "", FORM_START)
    for _ in range(100):  # the upload is on disk while it streams
        if any(spools[0].iterdir()):
            break
        time.sleep(0.02)
    assert any(spools[0].iterdir())
    sock.close()
    assert _until_empty(spools) == [[], []]


def test_an_upload_past_its_deadline_is_a_504_and_leaves_nothing(
        queen: Daemon, spools: tuple[Path, Path]) -> None:
    with _raw_upload(queen, "X-Request-Timeout: 0.5\r\n", FORM_START) as sock:
        sock.settimeout(10)
        answer = _response(sock)  # sent nothing more: a trickle
    assert answer.startswith("HTTP/1.1 504"), answer[:200]
    assert '"code":"deadline_exceeded"' in answer.replace(" ", "")
    assert _until_empty(spools) == [[], []]


def test_a_transcribe_job_reads_an_uploaded_file(client: openai.OpenAI, queen: Daemon) -> None:
    uploaded = client.files.create(file=_file(), purpose="user_data")
    assert uploaded.bytes == len(AUDIO) and uploaded.filename == "a.wav"
    assert client.files.retrieve(uploaded.id).bytes == len(AUDIO)
    assert client.files.content(uploaded.id).content == AUDIO
    with QueenClient(queen.url) as jobs:
        job = jobs.submit("transcribe", model=MODEL, file_id=uploaded.id)
        events = list(jobs.follow(job))
        srt_job = jobs.submit("transcribe", model=MODEL, file_id=uploaded.id,
                              response_format="srt")
        [srt] = [e.data for e in jobs.follow(srt_job) if e.event == "result"]
        refused = []
        for fields in ({"file_id": "art_" + "0" * 32}, {"file_id": "../../etc/passwd"},
                       {"stream": True}, {"task": "translate", "language": "en"},
                       {"response_format": "docx"}):
            with pytest.raises(RbeeError) as bad:
                jobs.submit("transcribe", **{"model": MODEL, "file_id": uploaded.id, **fields})
            refused.append(bad.value.param)
    [result] = [e.data for e in events if e.event == "result"]
    assert result["transcript"]["text"] == TEXT and result["file_id"] == uploaded.id
    assert srt["transcript"].startswith("1\n00:00:00,000 --> 00:00:01,000\nSecond 1 is loud.")
    assert refused == ["file_id", "file_id", "stream", "language", "response_format"]
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


def test_bad_file_uploads_name_their_param(client: openai.OpenAI, queen: Daemon) -> None:
    with pytest.raises(openai.BadRequestError) as purpose:
        client.files.create(file=_file(), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as empty:
        client.files.create(file=_file(b""), purpose="user_data")
    with pytest.raises(openai.APIStatusError) as huge:
        client.files.create(file=_file(b"\0" * (MAX_UPLOAD + 1)), purpose="user_data")
    assert [e.value.body["param"] for e in (purpose, empty, huge)  # type: ignore[index]
            ] == ["purpose", "file", "file"]
    assert huge.value.status_code == 413
    html = client.files.create(file=("x.html", b"<script>", "text/html"), purpose="user_data")
    served = httpx.get(f"{queen.url}/v1/files/{html.id}/content", timeout=5)
    assert served.headers["content-type"] == "application/octet-stream"  # never rendered
    client.files.delete(html.id)


def test_a_file_is_its_tenants(tmp_path: Path) -> None:
    boot = "bootstrap-s3cret-for-the-files-test"
    env = rbee_env(tmp_path, RBEE_QUEEN_API_TOKEN=boot)
    admin = {**env, "RBEE_API_TOKEN": boot}
    for queen in running_queen(env):
        keys = []
        for tenant in ("acme", "globex"):
            assert run_cli(admin, "tenant", "create", tenant).returncode == 0
            made = run_cli(admin, "--json", "user", "create", tenant, "ann")
            keys.append(run_cli(admin, "key", "create", json.loads(made.stdout)[0]["id"]
                                ).stdout.strip())
        acme, globex = (openai.OpenAI(base_url=f"{queen.url}/v1", api_key=k, max_retries=0)
                        for k in keys)
        uploaded = acme.files.create(file=_file(), purpose="user_data")
        for call in (globex.files.retrieve, globex.files.content, globex.files.delete):
            with pytest.raises(openai.NotFoundError) as other:
                call(uploaded.id)
            assert other.value.body["param"] == "file_id"  # type: ignore[index]
        with QueenClient(queen.url, token=keys[1]) as jobs, pytest.raises(RbeeError) as job:
            jobs.submit("transcribe", model=MODEL, file_id=uploaded.id)
        assert job.value.param == "file_id"
        with QueenClient(queen.url, token=keys[0]) as jobs:
            done = list(jobs.follow(jobs.submit("transcribe", model=MODEL,
                                                file_id=uploaded.id)))
        [result] = [e.data for e in done if e.event == "result"]
        assert result["transcript"]["text"] == TEXT
