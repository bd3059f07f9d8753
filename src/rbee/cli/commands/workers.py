"""`rbee worker spawn|list|stop`."""

from __future__ import annotations

from typing import Annotated

import typer

from rbee.cli.commands.queen import workers_table
from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json

app = typer.Typer(help="Place, list and stop workers.", no_args_is_help=True)


@app.command()
def spawn(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name or reference")] = "",
    hive: Annotated[str | None, typer.Option(help="Hive to place it on")] = None,
    device: Annotated[str | None, typer.Option(
        help='"cpu", "cuda:N", "metal:0" [default: the scheduler picks]')] = None,
    placement: Annotated[str, typer.Option(
        help="pin: only --hive/--device (else fail with the report); prefer: there if it "
             "fits; auto: scheduler's choice")] = "pin",
    keep_warm: Annotated[bool, typer.Option(
        "--keep-warm", help="Never unload it for idleness or to make room")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="Engine threads")] = None,
    slots: Annotated[int | None, typer.Option(
        min=1, max=1024, help="Requests it serves at once, for engines that batch "
                              "[default: the engine's own; llama_cpp: 1]")] = None,
) -> None:
    """Start a worker for a model and wait until it is ready."""
    c: Context = ctx.obj

    def run() -> int:
        client = c.client()
        c.ensure_queen(client)
        _, err = consoles()
        job_id = client.submit("worker_spawn", model=model, hive_id=hive, device=device,
                               threads=threads, slots=slots, placement=placement,
                               keep_warm=keep_warm)
        result: dict[str, object] = {}
        with err.status("spawning worker…") as status:
            for ev in client.run_events(job_id):
                if ev.event == "progress":
                    status.update(f"{ev.data['stage']} ({ev.data['fraction']:.0%})")
                elif ev.event == "result":
                    result = ev.data
        worker = result["worker"]
        if c.json:
            print_json(worker)
        else:
            assert isinstance(worker, dict)
            err.print(f"worker {worker['id']} ready: {worker['model']} on "
                      f"{worker['hive_id']} {worker['device']} at {worker['url']}")
        return 0

    guarded(run)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Workers on every hive."""
    c: Context = ctx.obj

    def run() -> int:
        workers = c.client().run("worker_list")["workers"]
        if c.json:
            print_json(workers)
        else:
            consoles()[0].print(workers_table(workers))
        return 0

    guarded(run)


@app.command()
def stop(ctx: typer.Context, worker_id: Annotated[str, typer.Argument()]) -> None:
    """Stop a worker (its memory is freed)."""
    c: Context = ctx.obj

    def run() -> int:
        worker = c.client().run("worker_stop", worker_id=worker_id)["worker"]
        if c.json:
            print_json(worker)
        else:
            consoles()[1].print(f"worker {worker_id} stopped")
        return 0

    guarded(run)
