"""The queen's form to a worker: the checked fields around the file, the client's filename
and content type unable to break out of their quoted header values."""

from __future__ import annotations

from pathlib import Path

import pytest
from python_multipart.multipart import MultipartParser, parse_options_header

from rbee.api.transcription import TranscriptionRequest, from_form, to_form
from rbee.core.errors import InvalidRequest
from rbee.queen.settings import QueenSettings
from rbee.queen.transcription import clear_stale_uploads, form_body
from rbee.web.uploads import Upload


async def test_a_hostile_filename_stays_inside_its_header(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"AUDIO")
    hostile = 'x"\r\nContent-Disposition: form-data; name="model"\r\n\r\nevil.wav'
    body = form_body(to_form(TranscriptionRequest(model="m", prompt='say "hi"\r\n--'),
                             "transcribe"),
                     Upload(path, hostile, "audio/wav\r\nX: y", 5))
    raw = b"".join([chunk async for chunk in body.chunks()])
    assert len(raw) == len(body)
    parts: list[tuple[bytes, bytes]] = []
    headers: list[bytes] = []
    current = bytearray()

    def header_value(data: bytes, start: int, end: int) -> None:
        headers.append(data[start:end])

    def data(d: bytes, start: int, end: int) -> None:
        current.extend(d[start:end])

    def end() -> None:
        parts.append((headers[-2] if len(headers) > 1 and b"filename" in headers[-2]
                      else headers[-1], bytes(current)))
        current.clear()

    boundary = parse_options_header(body.content_type)[1][b"boundary"]
    parser = MultipartParser(boundary, {"on_header_value": header_value,  # type: ignore[arg-type]
                                        "on_part_data": data, "on_part_end": end})
    parser.write(raw)
    names = [parse_options_header(h)[1][b"name"] for h, _ in parts]
    assert names.count(b"model") == 1  # no field smuggled in by the filename
    assert parts[-1][1] == b"AUDIO"
    assert dict(zip(names, (v for _, v in parts), strict=True))[b"prompt"] == b'say "hi"\r\n--'


@pytest.mark.parametrize(("fields", "param"), [
    ({"model": ["m"], "language": ["en"]}, "language"),
    ({"model": ["m"], "stream": ["true"]}, "stream"),
])
def test_a_translation_takes_no_language_or_stream(fields: dict[str, list[str]],
                                                   param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        from_form(fields, "translate")
    assert err.value.param == param


def test_missing_model_names_model() -> None:
    with pytest.raises(InvalidRequest) as err:
        from_form({"prompt": ["x"]}, "transcribe")
    assert err.value.param == "model"


def test_a_restart_clears_uploads_a_dead_queen_left(tmp_path: Path) -> None:
    settings = QueenSettings(state_dir=tmp_path)
    assert clear_stale_uploads(settings) == 0  # no folder yet: nothing to do
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "upload-abc").write_bytes(b"x")
    (uploads / "keep.txt").write_bytes(b"y")  # not ours
    assert clear_stale_uploads(settings) == 1
    assert [p.name for p in uploads.iterdir()] == ["keep.txt"]
