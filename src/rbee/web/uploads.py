"""Multipart uploads streamed to a file on disk, bounded, never held whole in memory.

python-multipart's streaming parser (the one Starlette uses) is fed the request body chunk
by chunk as it arrives; the file part's bytes go straight to a temp file, the text fields
into small bounded buffers. Starlette's own `request.form()` was not used: it spools files
to disk only past 1 MB and bounds no file's size, so a 10 GB upload would fill the disk.

Every failure is an OpenAI envelope naming its param: not multipart (415, `Content-Type`),
too large (413, `file`), malformed or cut short (400, `file`), a field too long or too many
(400, that field). However the request ends (an error, the client hanging up, a deadline
cancelling the task), a file not handed over is removed: `Upload.remove` once handed over.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from rbee.core.errors import BodyTooLarge, InvalidRequest
from rbee.web.body import UnsupportedMediaType

UPLOAD_PREFIX = "upload-"  # every spooled file's name starts so (a restart clears them)
MAX_FIELD_BYTES = 64 * 1024  # a prompt of 4096 characters is at most 16 KiB of UTF-8
MAX_FIELDS = 32
FORM_OVERHEAD = MAX_FIELDS * (MAX_FIELD_BYTES // 16)  # headers, boundaries and fields: 128 KiB


@dataclass
class Upload:
    """The uploaded file, on disk; its owner removes it (`remove`) when done."""

    path: Path
    filename: str
    content_type: str
    size: int

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)  # by file field, in form order

    @property
    def file(self) -> Upload | None:
        """The first (for a one-file form, the only) file."""
        return next(iter(self.files.values()), None)

    def remove(self) -> None:
        for upload in self.files.values():
            upload.remove()


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary; a 415 naming Content-Type for any other body."""
    media, options = parse_options_header(content_type or "")
    if media != b"multipart/form-data":
        raise UnsupportedMediaType("request body must be multipart/form-data (a file upload): "
                                   "send the audio as the form's file field",
                                   param="Content-Type")
    boundary = options.get(b"boundary", b"")
    if not boundary:
        raise InvalidRequest("multipart/form-data needs a boundary", param="Content-Type")
    return boundary


class _Receiver:
    """python-multipart's callbacks: each part's name, its data to a field or the file."""

    def __init__(self, directory: Path, file_fields: tuple[str, ...],
                 max_file_bytes: int) -> None:
        self.form = Form()
        self._directory = directory
        self._file_fields = file_fields
        self._max_file_bytes = max_file_bytes
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._content_type = b""
        self._name = ""  # the current part's field name
        self._value: bytearray | None = None  # the current text field's
        self._out: BinaryIO | None = None  # the current file part's
        self._upload: Upload | None = None
        self.ended = False

    def callbacks(self) -> dict[str, object]:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value_part, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _part_begin(self) -> None:
        self._disposition = self._content_type = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = bytes(self._header_name).lower()
        if name == b"content-disposition":
            self._disposition = bytes(self._header_value)
        elif name == b"content-type":
            self._content_type = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = self._name = options.get(b"name", b"").decode("utf-8", "replace")
        # OpenAI's SDKs send a list of files as `image[]`: one file, under its plain name.
        if name.removesuffix("[]") in self._file_fields:
            name = self._name = name.removesuffix("[]")
            if name in self.form.files:
                raise InvalidRequest(f"the form has more than one {name!r} file", param=name)
            fd, path = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=self._directory)
            filename = options.get(b"filename", b"").decode("utf-8", "replace")
            self._upload = self.form.files[name] = Upload(
                Path(path), filename[:255], self._content_type.decode("latin-1")[:255], 0)
            self._out = os.fdopen(fd, "wb")
            return
        if sum(map(len, self.form.fields.values())) >= MAX_FIELDS:
            raise InvalidRequest(f"the form has more than {MAX_FIELDS} fields", param=name)
        if b"filename" in options:
            raise InvalidRequest(f"{name[:40]!r} is not a file field: the files are "
                                 f"{', '.join(self._file_fields)}", param=name[:40])
        self._value = bytearray()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            upload = self._upload
            assert upload is not None
            upload.size += end - start
            if upload.size > self._max_file_bytes:
                raise BodyTooLarge(f"{self._name} is larger than {self._max_file_bytes} "
                                   "bytes", param=self._name)
            # A network chunk (tens of KiB) written to a local file goes to the page
            # cache: cheaper than a hop to a thread for each one.
            self._out.write(data[start:end])
        elif self._value is not None:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"field {self._name!r} is longer than {MAX_FIELD_BYTES} "
                                     "bytes", param=self._name)

    def _part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        elif self._value is not None:
            try:
                text = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest(f"field {self._name!r} is not UTF-8 text",
                                     param=self._name) from None
            self.form.fields.setdefault(self._name, []).append(text)
            self._value = None

    def _end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


async def receive_form(request: Request, *, directory: Path, max_file_bytes: int,
                       file_fields: tuple[str, ...] = ("file",)) -> Form:
    """The request's form, its files (at most one per name in `file_fields`, each at most
    `max_file_bytes`) on disk in `directory` (the caller removes them: `Form.remove`);
    nothing is left on disk when this raises."""
    boundary = boundary_of(request.headers.get("content-type"))
    file_field = file_fields[0]
    limit = max_file_bytes * len(file_fields) + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:  # refused before a byte is read
        raise BodyTooLarge(f"the upload is larger than {max_file_bytes} bytes",
                           param=file_field)
    receiver = _Receiver(directory, file_fields, max_file_bytes)
    try:
        try:
            parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
        except FormParserError as exc:
            raise InvalidRequest(f"bad multipart boundary: {exc}", param="Content-Type"
                                 ) from None
        received = 0
        async for chunk in _body(request):
            received += len(chunk)
            if received > limit:
                raise BodyTooLarge(f"the upload is larger than {max_file_bytes} bytes",
                                   param=file_field)
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise InvalidRequest(f"the body is not valid multipart/form-data: {exc}",
                                     param=file_field) from None
        if not receiver.ended:
            raise InvalidRequest("the multipart body ended before its closing boundary",
                                 param=file_field)
    except BaseException:
        receiver.close()
        receiver.form.remove()
        raise
    return receiver.form


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        # Nobody is left to answer; the caller's cleanup runs on the way out.
        raise InvalidRequest("the client hung up during the upload", param="file") from None
