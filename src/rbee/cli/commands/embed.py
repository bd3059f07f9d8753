"""`rbee embed TEXT...`: vectors for texts (starting a queen if needed), as an `embed` job."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.jobrun import JobPrinter, cancelled, submit
from rbee.cli.render import consoles, print_json, table
from rbee.client import QueenClient
from rbee.models.catalog import DEFAULT_EMBEDDING_MODEL

SHOWN_VALUES = 6  # per vector, for people (--json prints them whole)


def embed(
    ctx: typer.Context,
    texts: Annotated[list[str], typer.Argument(help="Texts to embed (one vector each)")],
    model: Annotated[str, typer.Option("--model", "-m", help="Embedding model name or "
                                       "reference")] = DEFAULT_EMBEDDING_MODEL,
    hive: Annotated[str | None, typer.Option(help="Run on this hive")] = None,
    device: Annotated[str | None, typer.Option(help='Device, e.g. "cpu" or "cuda:0"')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole vectors, as JSON")] = False,
) -> None:
    c: Context = ctx.obj
    c.json = c.json or as_json
    fields: dict[str, Any] = dict(model=model, input=texts, hive_id=hive, device=device)
    guarded(lambda: _run(c, fields))


def _run(c: Context, fields: dict[str, Any]) -> int:
    client = c.client()
    preload = None if fields.get("hive_id") or fields.get("device") else fields["model"]
    job_id = submit(c, client, "embed", fields, preload)
    try:
        return _follow(c, client, job_id, fields["input"])
    except KeyboardInterrupt:
        return cancelled(c, client, job_id)


def _follow(c: Context, client: QueenClient, job_id: str, texts: list[str]) -> int:
    printer = JobPrinter(c.json)  # narration and worker start-up progress on stderr
    started = time.perf_counter()
    result = printer.follow(client, job_id)
    if result is None:
        return 1
    if c.json:
        print_json({"job_id": job_id, "state": "done", **result})
        return 0
    out, err = consoles()
    rows = [(escape(_short(t)), len(d["embedding"]),
             ", ".join(f"{v:+.4f}" for v in d["embedding"][:SHOWN_VALUES]) + ", …")
            for t, d in zip(texts, result.get("data", ()), strict=False)]
    out.print(table(f"{result.get('model')}: {result.get('dimensions')} dimensions",
                    ["text", "dims", f"first {SHOWN_VALUES} values"], rows))
    usage = result.get("usage", {})
    err.print(f"[dim]{usage.get('prompt_tokens')} tokens · "
              f"{(time.perf_counter() - started) * 1000:.0f} ms · "
              f"worker {result.get('worker_id')} · --json for whole vectors[/dim]")
    return 0


def _short(text: str, width: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"
