"""`rbee speak TEXT -o FILE`: speech to a file (starting a queen if needed).

Not a job: a job's result goes through its SSE stream, and audio there would be base64 (a
third larger, held whole). Until jobs store binary artifacts, the CLI streams
/v1/audio/speech straight into the file, written beside it and renamed when whole, so a
failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rbee.api.speech import AUDIO_FORMATS, PCM_RATE
from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.jobrun import ready_queen
from rbee.cli.render import consoles, print_json
from rbee.client import QueenClient
from rbee.core.errors import InvalidRequest
from rbee.models.catalog import DEFAULT_SPEECH_MODEL


def speak(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The text to speak (up to 4096 characters)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The audio file to write")],
    voice: Annotated[str, typer.Option("--voice", "-v", help="A voice of the model (OpenAI's "
                                       "names mean its default)")] = "alloy",
    audio_format: Annotated[str | None, typer.Option(
        "--format", "-f", help=f"{', '.join(AUDIO_FORMATS)} (default: from the file's "
        "extension, else wav)")] = None,
    speed: Annotated[float, typer.Option(help="0.25 to 4.0")] = 1.0,
    model: Annotated[str, typer.Option("--model", "-m", help="Speech model name or "
                                       "reference")] = DEFAULT_SPEECH_MODEL,
    hive: Annotated[str | None, typer.Option(help="Run on this hive")] = None,
    device: Annotated[str | None, typer.Option(help="Run on this device of the hive")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON summary on stdout")] = False,
) -> None:
    c: Context = ctx.obj
    c.json = c.json or as_json
    fmt = audio_format or _format_of(output)
    if fmt not in AUDIO_FORMATS:
        guarded(lambda: _refuse(fmt))
    fields: dict[str, Any] = dict(model=model, input=text, voice=voice, response_format=fmt,
                                  speed=speed)
    # rbee's own placement fields, as the API takes them (left out when not given)
    fields.update({k: v for k, v in (("hive_id", hive), ("device", device)) if v is not None})
    guarded(lambda: _run(c, fields, output))


def _refuse(fmt: str) -> int:
    raise InvalidRequest(f"--format {fmt!r} is not one of {', '.join(AUDIO_FORMATS)}")


def _format_of(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"ogg": "opus", "m4a": "aac", "raw": "pcm"}.get(ext, ext) if ext else "wav"


def _run(c: Context, fields: dict[str, Any], output: Path) -> int:
    client = c.client()
    err = consoles()[1]
    ready_queen(c, client, fields["model"])
    started = time.perf_counter()
    size, first = _write(c, client, fields, output)
    took = time.perf_counter() - started
    summary = {"output": str(output), "format": fields["response_format"], "bytes": size,
               "seconds": round(took, 3),
               "first_audio_seconds": None if first is None else round(first - started, 3)}
    if fields["response_format"] in ("wav", "pcm"):
        header = 44 if fields["response_format"] == "wav" else 0
        summary["audio_seconds"] = round((size - header) / 2 / PCM_RATE, 3)
    if c.json:
        print_json(summary)
    else:
        audio = f" · {summary['audio_seconds']} s of audio" if "audio_seconds" in summary else ""
        err.print(f"[green]wrote {output}[/green] [dim]({size} bytes{audio} · first audio "
                  f"after {summary['first_audio_seconds']} s · {took:.2f} s)[/dim]")
    return 0


def _write(c: Context, client: QueenClient, fields: dict[str, Any],
           output: Path) -> tuple[int, float | None]:
    """Stream the audio to a file beside `output`, renamed over it once whole."""
    partial = output.with_name(f".{output.name}.partial")
    size, first = 0, None
    status = consoles()[1].status("speaking…")
    if not c.json:
        status.start()
    try:
        with partial.open("wb") as f:
            for chunk in client.speech(**fields):
                first = first or time.perf_counter()
                f.write(chunk)
                size += len(chunk)
                status.update(f"speaking… {size} bytes")
        os.replace(partial, output)
    finally:
        status.stop()
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return size, first
