"""`rbee jobs list|show|follow|cancel`."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json, table, when

app = typer.Typer(help="Job history, live streams and cancellation.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context,
          limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
          state: Annotated[str | None, typer.Option(help="queued|running|done|error|cancelled")]
          = None) -> None:
    """Recent jobs, newest first."""
    c: Context = ctx.obj

    def run() -> int:
        jobs = c.client().jobs(limit, state)
        if c.json:
            print_json(jobs)
        else:
            consoles()[0].print(table("jobs", ["job", "operation", "state", "created", "error"],
                                      [(j["job_id"], j["operation"], j["state"],
                                        when(j["created_at"]), j["error"]) for j in jobs]))
        return 0

    guarded(run)


@app.command()
def show(ctx: typer.Context, job_id: str) -> None:
    """One job's request, state and result."""
    c: Context = ctx.obj

    def run() -> int:
        job = c.client().job(job_id)
        if c.json:
            print_json(job)
        else:
            out, _ = consoles()
            out.print(f"{job['job_id']}  {job['operation']}  [bold]{job['state']}[/bold]")
            out.print(f"created {when(job['created_at'])}  finished {when(job['finished_at'])}")
            if job["error"]:
                out.print(f"[red]error:[/red] {job['error']}")
            out.print_json(data={"request": job["request"], "result": job["result"]})
        return 0

    guarded(run)


@app.command()
def follow(ctx: typer.Context, job_id: str,
           after: Annotated[int, typer.Option(help="Resume after this event id")] = -1) -> None:
    """Stream a job's events (replays history first)."""
    c: Context = ctx.obj

    def run() -> int:
        _, err = consoles()
        code = 0
        for ev in c.client().follow(job_id, after):
            if c.json:
                sys.stdout.write(json.dumps({"id": ev.seq, "event": ev.event,
                                             "data": ev.data}) + "\n")
            elif ev.event == "token":
                sys.stdout.write(ev.data["t"])
            elif ev.event in ("error", "cancelled"):
                err.print(f"\n[red]{ev.event}:[/red] {ev.data.get('message')}")
                code = 1
            elif ev.event != "result":
                err.print(f"[dim]{ev.event}: {ev.data}[/dim]")
            sys.stdout.flush()
        return code

    guarded(run)


@app.command()
def cancel(ctx: typer.Context, job_id: str) -> None:
    """Cancel a running job (the worker stops generating)."""
    c: Context = ctx.obj

    def run() -> int:
        job = c.client().cancel(job_id)
        if c.json:
            print_json(job)
        else:
            consoles()[1].print(f"{job_id}: {job['state']}")
        return 0

    guarded(run)
