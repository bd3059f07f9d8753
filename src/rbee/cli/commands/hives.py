"""`rbee hive list|ssh-test|install|start|stop|status|uninstall|refresh`.

Each is a job on the queen (which holds the SSH connections); its narration streams here.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.status import Status

from rbee.api.jobs import TERMINAL_EVENTS
from rbee.cli.context import Context
from rbee.cli.errors import EXIT_INTERRUPTED, guarded
from rbee.cli.render import consoles, print_json, table
from rbee.client import QueenClient, StreamEvent

app = typer.Typer(help="Machines in ~/.config/rbee/hives.conf: install and run hives over SSH.",
                  no_args_is_help=True)
Name = Annotated[str, typer.Argument(help="Host name from hives.conf")]


def _narrated(c: Context, operation: str, hive_id: str, doing: str) -> dict[str, Any]:
    """Run a hive job, printing its narration (stderr) under a progress spinner.

    Ctrl-C cancels the job on the queen (an install removes what it made) and waits for its
    end, so the user learns what state the machine is in; a second Ctrl-C stops waiting.
    """
    _, err = consoles()
    result: dict[str, Any] = {}
    last = -1
    with c.client() as client, err.status(f"{doing}…") as status:
        c.ensure_queen(client)
        job_id = client.submit(operation, hive_id=hive_id)
        try:
            for ev in client.run_events(job_id):
                last = ev.seq
                _show(c, ev, err, status, doing)
                if ev.event == "result":
                    result = ev.data
        except KeyboardInterrupt:
            status.update(f"cancelling: {doing}…")
            end = _cancel(c, client, job_id, last, err, status, doing)
            _report_cancel(c, job_id, hive_id, end, err)
            raise typer.Exit(EXIT_INTERRUPTED) from None
    return result


def _show(c: Context, ev: StreamEvent, err: Console, status: Status, doing: str) -> None:
    if ev.event == "narration" and not c.json:
        err.print(f"  [dim]{escape(str(ev.data.get('action', '')))}[/dim] "
                  f"{escape(str(ev.data.get('message', '')))}", soft_wrap=True)
    elif ev.event == "progress":
        status.update(f"{doing}: {ev.data['stage']} {ev.data['fraction']:.0%}")


def _cancel(c: Context, client: QueenClient, job_id: str, last: int, err: Console,
            status: Status, doing: str) -> StreamEvent | None:
    """Cancel the job and follow it to its terminal event (None: the user stopped waiting)."""
    if not c.json:
        err.print("[yellow]Ctrl-C: cancelling; the queen undoes what the job started "
                  "(Ctrl-C again to stop waiting)[/yellow]")
    try:
        client.cancel(job_id)
        for ev in client.follow(job_id, after=last):
            _show(c, ev, err, status, doing)
            if ev.event in TERMINAL_EVENTS:
                return ev
    except KeyboardInterrupt:
        return None
    return None


def _report_cancel(c: Context, job_id: str, hive_id: str, end: StreamEvent | None,
                   err: Console) -> None:
    state = end.event if end is not None else "cancelling"
    if c.json:
        print_json({"job_id": job_id, "hive_id": hive_id, "state": state})
        return
    if end is None:
        err.print(f"[yellow]{hive_id}: stopped waiting; the queen goes on cancelling "
                  f"(see `rbee jobs show {job_id}`)[/yellow]")
    elif end.event == "cancelled":
        err.print(f"[yellow]{hive_id}: cancelled[/yellow]")
    elif end.event == "done":
        err.print(f"[yellow]{hive_id}: the job had already finished[/yellow]")
    else:
        err.print(f"[yellow]{hive_id}: the job ended with an error: "
                  f"{escape(str(end.data.get('message', '')))}[/yellow]")


def _simple(operation: str, doing: str, done: str) -> Any:
    def command(ctx: typer.Context, name: Name) -> None:
        c: Context = ctx.obj

        def run() -> int:
            result = _narrated(c, operation, name, doing)
            if c.json:
                print_json(result)
            else:
                consoles()[1].print(f"{name}: {done}")
            return 0

        guarded(run)

    command.__doc__ = f"{doing.capitalize()} ({operation} job)."
    return command


app.command("install")(_simple("hive_install", "installing the hive",
                               "installed, running and registered"))
app.command("start")(_simple("hive_start", "starting the hive", "running and registered"))
app.command("stop")(_simple("hive_stop", "stopping the hive", "stopped"))
app.command("uninstall")(_simple("hive_uninstall", "removing rbee", "uninstalled"))


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Configured and registered hives, with their state."""
    c: Context = ctx.obj

    def run() -> int:
        hives = c.run("hive_list")["hives"]
        if c.json:
            print_json(hives)
        else:
            consoles()[0].print(table("hives", (
                "name", "state", "host", "ssh", "hive port", "region", "version", "workers"),
                [(h["id"], h["state"], h["host"], h["ssh"], h["hive_port"], h["region"],
                  h["version"], h["workers"]) for h in hives]))
        return 0

    guarded(run)


@app.command("ssh-test")
def ssh_test(ctx: typer.Context, name: Name) -> None:
    """Check that the machine answers over SSH and has a usable Python."""
    c: Context = ctx.obj

    def run() -> int:
        r = _narrated(c, "ssh_test", name, "connecting")
        if c.json:
            print_json(r)
        else:
            p = r["platform"]
            installed = r["installed"]
            consoles()[1].print(
                f"{name}: reachable ({r['target']}, {r['connect_ms']} ms); {p['system']}/"
                f"{p['machine']}, Python {p['python']}; install: "
                f"{'pushed wheels (offline)' if r['offline_install'] else 'package registry'}"
                f"; rbee {installed['version'] if installed else 'not installed'}")
        return 0

    guarded(run)


@app.command()
def status(ctx: typer.Context, name: Name) -> None:
    """What the queen knows of the hive, and what SSH finds on the machine."""
    c: Context = ctx.obj

    def run() -> int:
        r = _narrated(c, "hive_status", name, "checking")
        if c.json:
            print_json(r)
            return 0
        out = consoles()[0]
        ssh = r.get("ssh") or {}
        remote = r.get("remote") or {}
        out.print(f"[bold]{name}[/bold]: {r['state']} "
                  f"(last report {r['last_seen_s']} s ago)" if r["last_seen_s"] is not None
                  else f"[bold]{name}[/bold]: {r['state']}")
        if ssh:
            out.print(f"  ssh {ssh.get('target')}: "
                      f"{'reachable' if ssh.get('reachable') else escape(ssh.get('error', ''))}")
        if remote:
            inst = remote.get("installed")
            what = f"{inst['version']} ({inst['method']})" if inst else "no"
            out.print(f"  installed: {what}; running: {remote.get('running')}; "
                      f"version matches queen: {remote.get('version_matches')}")
        out.print(f"  workers: {r['workers']}; devices: "
                  f"{', '.join(d['id'] for d in r['devices']) or '-'}")
        return 0

    guarded(run)


@app.command()
def refresh(ctx: typer.Context, name: Name) -> None:
    """Ask the hive for its devices again (after a GPU change)."""
    c: Context = ctx.obj

    def run() -> int:
        r = _narrated(c, "hive_refresh_capabilities", name, "refreshing")
        if c.json:
            print_json(r)
        else:
            consoles()[0].print(table(f"{name} devices", ("id", "name", "free", "total"), [
                (d["id"], d["name"], _gib(d["memory_free"]), _gib(d["memory_total"]))
                for d in r["devices"]]))
        return 0

    guarded(run)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
