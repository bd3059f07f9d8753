"""`rbee image PROMPT -o FILE`: pictures into files (starting a queen if needed).

An `image` job: its per-step progress shows as it comes (the job's stream), the pictures are
artifacts on the queen, each downloaded (streamed) beside its file and renamed when whole, so
a failure leaves nothing half-written; Ctrl-C cancels the job. With --n above 1 the second
picture goes to NAME-2.EXT, and so on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rbee.api.images import IMAGE_FORMATS
from rbee.cli.commands.video import download
from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.jobrun import JobPrinter, cancelled, submit
from rbee.cli.render import consoles, print_json
from rbee.client import QueenClient
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
    job_id = submit(c, client, "image", fields, fields["model"])
    try:
        return _follow(c, client, job_id, fields, output)
    except KeyboardInterrupt:
        return cancelled(c, client, job_id)


def _follow(c: Context, client: QueenClient, job_id: str, fields: dict[str, Any],
            output: Path) -> int:
    started = time.perf_counter()
    result = JobPrinter(c.json).follow(client, job_id)
    if result is None:
        return 1
    written = [{"output": str(path), "bytes": download(client, image["url"], path),
                "size": image["size"]}
               for image, path in zip(result["images"], outputs(output, fields["n"]),
                                      strict=False)]
    took = time.perf_counter() - started
    summary = {"job_id": job_id, "images": written, "format": fields["output_format"],
               "steps": result["steps"], "seconds": round(took, 3)}
    if c.json:
        print_json(summary)
        return 0
    err = consoles()[1]
    for w in written:
        err.print(f"[green]wrote {w['output']}[/green] [dim]({w['size']}, {w['bytes']} "
                  "bytes)[/dim]")
    err.print(f"[dim]{result['steps']} steps · {took:.2f} s · worker "
              f"{result['worker_id']}[/dim]")
    return 0
