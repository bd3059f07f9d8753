"""`rbee transcribe FILE`: speech in an audio file to text (starting a queen if needed).

The file is uploaded from disk in chunks (progress on stderr), the answer printed on stdout
in the format asked for: the plain text for json (or the JSON itself with --json), the
subtitles for srt/vtt, the whole verbose JSON for verbose_json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rbee.api.transcription import TRANSCRIPT_FORMATS
from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.jobrun import ready_queen
from rbee.cli.render import consoles, print_json
from rbee.core.errors import InvalidRequest
from rbee.models.catalog import DEFAULT_TRANSCRIPTION_MODEL


def transcribe(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The audio file (wav, mp3, m4a, ogg, flac, "
                                         "webm, …)")],
    model: Annotated[str, typer.Option("--model", "-m", help="Transcription model name or "
                                       "reference")] = DEFAULT_TRANSCRIPTION_MODEL,
    fmt: Annotated[str, typer.Option("--format", "-f", help=", ".join(TRANSCRIPT_FORMATS)
                                     )] = "json",
    language: Annotated[str | None, typer.Option("--language", "-l", help="ISO-639-1 code "
                                                 "of the speech, e.g. en")] = None,
    prompt: Annotated[str | None, typer.Option(help="Text the speech continues")] = None,
    hive: Annotated[str | None, typer.Option(help="Run on this hive")] = None,
    device: Annotated[str | None, typer.Option(help="Run on this device of the hive")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON summary on stdout")] = False,
) -> None:
    c: Context = ctx.obj
    c.json = c.json or as_json
    fields: dict[str, str] = {"model": model, "response_format": fmt}
    if language:
        fields["language"] = language
    if prompt:
        fields["prompt"] = prompt
    # rbee's own placement fields, as the API takes them (left out when not given)
    fields.update({k: v for k, v in (("hive_id", hive), ("device", device)) if v is not None})
    guarded(lambda: _run(c, file, fields))


def _check(file: Path, fmt: str) -> None:
    if fmt not in TRANSCRIPT_FORMATS:
        raise InvalidRequest(f"--format {fmt!r} is not one of {', '.join(TRANSCRIPT_FORMATS)}")
    if not file.is_file():
        raise InvalidRequest(f"no such file: {file}")


def _run(c: Context, file: Path, fields: dict[str, str]) -> int:
    _check(file, fields["response_format"])
    client = c.client()
    err = consoles()[1]
    ready_queen(c, client, fields["model"])
    status = err.status("uploading…")
    if not c.json:
        status.start()

    def progress(sent: int, total: int) -> None:
        status.update(f"uploading… {sent * 100 // max(total, 1)}% of {total} bytes"
                      if sent < total else "transcribing…")

    started = time.perf_counter()
    try:
        r = client.transcribe(file, fields, progress)
    finally:
        status.stop()
    took = time.perf_counter() - started
    answer: Any = r.json() if fields["response_format"].endswith("json") else r.text
    if c.json:
        text = answer["text"] if isinstance(answer, dict) else answer
        print_json({"file": str(file), "model": fields["model"],
                    "format": fields["response_format"], "seconds": round(took, 3),
                    "text": text, "answer": answer})
        return 0
    if fields["response_format"] == "json":
        print(answer["text"])
    elif isinstance(answer, dict):
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        print(answer, end="" if answer.endswith("\n") else "\n")
    err.print(f"[dim]{file.name} · {took:.2f} s[/dim]")
    return 0
