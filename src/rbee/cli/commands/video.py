"""`rbee video PROMPT -o FILE`: a video made as a `video` job (starting a queen if needed).

Progress shows per denoising step; Ctrl-C cancels the job (the pipeline stops within a step).
The finished MP4 is an artifact on the queen: it is downloaded (streamed) beside FILE and
renamed over it once whole, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.jobrun import JobPrinter, cancelled, submit
from rbee.cli.render import consoles, print_json
from rbee.client import QueenClient


def video(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What the video shows")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The MP4 file to write")],
    seconds: Annotated[str, typer.Option(help="Whole seconds (frames = seconds x the "
                                         "queen's fps)")] = "4",
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT, multiples of 8")] = "720x1280",
    model: Annotated[str, typer.Option("--model", "-m", help="Video model (default: the "
                                       "queen's RBEE_QUEEN_VIDEO_MODEL)")] = "",
    steps: Annotated[int | None, typer.Option(help="Denoising steps (default: the "
                                              "queen's)")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed, for a repeatable video")] = None,
    hive: Annotated[str | None, typer.Option(help="Run on this hive")] = None,
    device: Annotated[str | None, typer.Option(help='Device, e.g. "cpu" or "cuda:0"')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON summary on stdout")] = False,
) -> None:
    c: Context = ctx.obj
    c.json = c.json or as_json
    fields: dict[str, Any] = dict(model=model or None, prompt=prompt, seconds=seconds,
                                  size=size, steps=steps, seed=seed, hive_id=hive,
                                  device=device)
    guarded(lambda: _run(c, fields, output))


def _run(c: Context, fields: dict[str, Any], output: Path) -> int:
    client = c.client()
    preload = None if fields.get("hive_id") or fields.get("device") else fields["model"]
    job_id = submit(c, client, "video", fields, preload)
    try:
        return _follow(c, client, job_id, output)
    except KeyboardInterrupt:
        return cancelled(c, client, job_id)


def _follow(c: Context, client: QueenClient, job_id: str, output: Path) -> int:
    started = time.perf_counter()
    result = JobPrinter(c.json).follow(client, job_id)
    if result is None:
        return 1
    size = download(client, result["url"], output)
    took = time.perf_counter() - started
    if c.json:
        print_json({"job_id": job_id, "state": "done", "output": str(output), **result})
        return 0
    consoles()[1].print(
        f"[green]wrote {output}[/green] [dim]({size} bytes · {result['frames']} frames of "
        f"{result['width']}x{result['height']} at {result['fps']} fps · {result['steps']} "
        f"steps · {took:.1f} s · worker {result['worker_id']})[/dim]")
    return 0


def download(client: QueenClient, url: str, output: Path) -> int:
    """Stream the artifact to a file beside `output`, renamed over it once whole."""
    partial = output.with_name(f".{output.name}.partial")
    size = 0
    try:
        with partial.open("wb") as f:
            for chunk in client.download(url):
                f.write(chunk)
                size += len(chunk)
        os.replace(partial, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return size
