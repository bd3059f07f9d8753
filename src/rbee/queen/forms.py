"""Multipart uploads on the queen: received to disk under the client's deadline, and sent on
to a worker as a form again whose files stream from that disk (`transport.FileBody`)."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from starlette.requests import Request

from rbee.core.errors import DeadlineExceeded
from rbee.core.private import private_dir
from rbee.queen.calls import client_deadline
from rbee.queen.settings import QueenSettings
from rbee.queen.transport import FileBody, FilePart
from rbee.web.uploads import Form, Upload, receive_form

# What may stand in a multipart header's quoted value: no quotes, no line breaks.
_UNSAFE = re.compile(r'[^A-Za-z0-9 ._+()\[\]-]')


def upload_dir(settings: QueenSettings) -> Path:
    return private_dir(settings.upload_dir or settings.state_dir / "uploads")


async def receive(request: Request, settings: QueenSettings, *, max_file_bytes: int,
                  file_fields: tuple[str, ...] = ("file",)) -> Form:
    """The upload on disk, under the client's deadline (a trickled upload ends there); the
    caller removes its files (`Form.remove`)."""
    loop = asyncio.get_running_loop()
    deadline = client_deadline(request.headers, loop.time(), settings.max_request_timeout)
    try:
        async with asyncio.timeout_at(deadline.by(loop.time())):
            return await receive_form(request, directory=upload_dir(settings),
                                      max_file_bytes=max_file_bytes, file_fields=file_fields)
    except TimeoutError:
        raise DeadlineExceeded("the request's deadline passed during the upload") from None


def form_body(fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, Upload]]
              ) -> FileBody:
    """A multipart form of `fields` then `files` (at least one), the files' bytes left on
    disk and read from there for each send."""
    boundary = f"rbee-{secrets.token_hex(16)}"
    head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   f"{value}\r\n" for name, value in fields)

    def header(name: str, upload: Upload) -> str:
        filename = _UNSAFE.sub("_", upload.filename)[:128] or name
        media = _UNSAFE.sub("_", upload.content_type.replace("/", "+"))[:128].replace("+", "/",
                                                                                       1)
        return (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: '
                f'{media or "application/octet-stream"}\r\n\r\n')

    # Each file is followed by the next one's header, the last by the closing boundary.
    tails = [f"\r\n{header(name, upload)}" for name, upload in files[1:]]
    tails.append(f"\r\n--{boundary}--\r\n")
    (first_name, first), *rest = files
    return FileBody(first.path, first.size, f"multipart/form-data; boundary={boundary}",
                    head=(head + header(first_name, first)).encode(),
                    tail=tails[0].encode(),
                    more=tuple(FilePart(upload.path, upload.size, tail.encode())
                               for (_, upload), tail in zip(rest, tails[1:], strict=True)))
