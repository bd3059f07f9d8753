"""`rbee queen start|stop|status`."""

from __future__ import annotations

import typer

from rbee.cli.context import Context
from rbee.cli.daemon import read_pid, stop_queen
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json, table

app = typer.Typer(help="Run the queen in the background, stop it, see what it runs.",
                  no_args_is_help=True)


@app.command()
def start(ctx: typer.Context) -> None:
    """Start the queen (and its local hive) in the background."""
    c: Context = ctx.obj

    def run() -> int:
        _, err = consoles()
        client = c.client()
        with err.status("starting the queen…"):
            started = c.ensure_queen(client)
        pid = read_pid(c.settings())
        if c.json:
            print_json({"url": c.queen_url, "pid": pid, "started": started})
        else:
            err.print(f"queen {'started' if started else 'already running'} at {c.queen_url}"
                      f" (pid {pid})")
        return 0

    guarded(run)


@app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the queen and everything it started (hive, workers)."""
    c: Context = ctx.obj

    def run() -> int:
        _, err = consoles()
        with err.status("stopping the queen…"):
            pid = stop_queen(c.settings())
        if c.json:
            print_json({"stopped": pid is not None, "pid": pid})
        else:
            err.print("queen stopped" if pid else "no queen running")
        return 0

    guarded(run)


@app.command()
def status(ctx: typer.Context) -> None:
    """Hives and workers the queen knows."""
    c: Context = ctx.obj

    def run() -> int:
        client = c.client()
        health = client.health()
        if health is None:
            if c.json:
                print_json({"running": False, "url": c.queen_url})
            else:
                consoles()[1].print(f"no queen at {c.queen_url}")
            return 3
        result = client.run("status")
        if c.json:
            print_json({"running": True, "url": c.queen_url, **health, **result})
            return 0
        out, _ = consoles()
        out.print(f"queen {health['version']} at {c.queen_url}: {health_line(health)}")
        out.print(table("hives", ["hive", "up", "url", "devices"],
                        [(h["id"], h["up"], h["url"], ", ".join(d["id"] for d in h["devices"]))
                         for h in result["hives"]]))
        out.print(workers_table(result["workers"]))
        return 0

    guarded(run)


def health_line(health: dict[str, object]) -> str:
    """`ok`, or what is wrong: e.g. `unavailable (local hive restarting; killed by SIGKILL)`."""
    local = health.get("local_hive")
    if not isinstance(local, dict) or local.get("up"):
        return str(health.get("status"))
    exited = f"; {local['last_exit']}" if local.get("last_exit") else ""
    return f"{health.get('status')} (local hive {local.get('supervision')}{exited})"


def workers_table(workers: list[dict[str, object]]) -> object:
    return table("workers", ["worker", "model", "hive", "device", "state", "load", "url"],
                 [(w["id"], w["model"], w["hive_id"], w["device"], w["state"], w["load"], w["url"])
                  for w in workers])
