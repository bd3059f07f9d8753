"""`rbee image PROMPT -o FILE`: pictures into files (starting a queen if needed).

Not a job: a job's result goes through its SSE stream, and pictures there would be base64 held
whole. Until jobs store binary artifacts, the CLI asks /v1/images/generations for a stream:
rbee's per-step progress events show as they come, and each picture is written beside its
file and renamed when whole, so a failure leaves nothing half-written. With --n above 1 the
second picture goes to NAME-2.EXT, and so on.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rbee.api.images import IMAGE_FORMATS, PROGRESS_EVENT
from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json
from rbee.core.errors import InvalidRequest


def image(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to paint")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The picture file to write")],
    model: Annotated[str, typer.Option("--model", "-m", help="An image model: a diffusers "
                                       "pipeline folder (file:/abs/folder/) or hub repository "
                                       "(hf:org/repo)")],
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT (multiples of 8) or auto (the "
                                      "pipeline's own)")] = "auto",
    n: Annotated[int, typer.Option("--n", help="How many pictures")] = 1,
    image_format: Annotated[str | None, typer.Option(
        "--format", "-f", help=f"{', '.join(IMAGE_FORMATS)} (default: from the file's "
        "extension, else png)")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps (default: the "
                                              "pipeline's)")] = None,
    seed: Annotated[int | None, typer.Option(help="The same seed paints the same "
                                             "picture")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON summary on stdout")] = False,
) -> None:
    c: Context = ctx.obj
    c.json = c.json or as_json
    fmt = image_format or _format_of(output)
    if fmt not in IMAGE_FORMATS:
        guarded(lambda: _refuse(fmt))
    fields: dict[str, Any] = dict(model=model, prompt=prompt, size=size, n=n,
                                  output_format=fmt, steps=steps, seed=seed)
    guarded(lambda: _run(c, fields, output))


def _refuse(fmt: str) -> int:
    raise InvalidRequest(f"--format {fmt!r} is not one of {', '.join(IMAGE_FORMATS)}")


def _format_of(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"jpg": "jpeg"}.get(ext, ext) if ext else "png"


def outputs(output: Path, n: int) -> list[Path]:
    """Where each of n pictures goes: the file itself, then NAME-2.EXT, NAME-3.EXT, ..."""
    return [output] + [output.with_name(f"{output.stem}-{i}{output.suffix}")
                       for i in range(2, n + 1)]


def _run(c: Context, fields: dict[str, Any], output: Path) -> int:
    client = c.client()
    err = consoles()[1]
    if c.json:
        c.ensure_queen(client, preload=fields["model"])
    else:
        with err.status("checking the queen…"):
            if c.ensure_queen(client, preload=fields["model"]):
                err.print(f"[dim]started queen at {c.queen_url}[/dim]")
    started = time.perf_counter()
    files = outputs(output, fields["n"])
    written: list[dict[str, Any]] = []
    steps = 0
    status = err.status("painting…")
    if not c.json:
        status.start()
    try:
        for event in client.images(**fields):
            if event.get("type") == PROGRESS_EVENT:
                steps += 1
                status.update(f"painting {event['image_index'] + 1}/{fields['n']}: step "
                              f"{event['step']}/{event['steps']}")
            elif event.get("type") == "image_generation.completed":
                path = files[len(written)]
                size = _write(path, base64.b64decode(event["b64_json"]))
                written.append({"output": str(path), "bytes": size, "size": event["size"]})
    finally:
        status.stop()
    took = time.perf_counter() - started
    summary = {"images": written, "format": fields["output_format"], "steps": steps,
               "seconds": round(took, 3)}
    if c.json:
        print_json(summary)
    else:
        for w in written:
            err.print(f"[green]wrote {w['output']}[/green] [dim]({w['size']}, {w['bytes']} "
                      "bytes)[/dim]")
        err.print(f"[dim]{steps} steps · {took:.2f} s[/dim]")
    return 0


def _write(path: Path, data: bytes) -> int:
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return len(data)
