"""`rbee queen start|stop|status|reset-db`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rbee.cli.context import Context
from rbee.cli.daemon import DaemonError, read_pid, stop_queen
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json, table
from rbee.storage.files import move_aside

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


@app.command("reset-db")
def reset_db(ctx: typer.Context,
             state_dir: Annotated[Path | None, typer.Option(
                 help="The queen's state directory (default: RBEE_QUEEN_STATE_DIR or "
                      "~/.local/state/rbee)")] = None) -> None:
    """Move queen.db aside (renamed, kept): the way out of a damaged database."""
    c: Context = ctx.obj

    def run() -> int:
        settings = c.settings()
        if state_dir is not None:
            settings = settings.model_copy(update={"state_dir": state_dir})
        pid = read_pid(settings)
        if pid is not None:
            raise DaemonError(f"the queen is running (pid {pid}) on this database; stop it "
                              "first: rbee queen stop")
        path = settings.state_dir / "queen.db"
        try:
            moved = move_aside(path)
        except OSError as exc:
            raise DaemonError(f"could not move {path} aside: {exc.strerror or exc}") from None
        if c.json:
            print_json({"database": str(path), "moved_to": str(moved) if moved else None})
        elif moved is None:
            consoles()[1].print(f"no database at {path}: nothing to move")
        else:
            consoles()[1].print(f"moved {path} aside to {moved}; the queen's next start begins "
                                "an empty database (jobs, scripts, installed hives' secrets)")
        return 0

    guarded(run)


def workers_table(workers: list[dict[str, object]]) -> object:
    # The kind column only when some worker is not a chat worker: 80 columns are tight.
    kinds = any(w.get("kind", "chat") != "chat" for w in workers)
    columns = ["worker", "model", *(["kind"] if kinds else []), "hive", "device", "state",
               "load", "url"]
    return table("workers", columns,
                 [(w["id"], w["model"], *([w.get("kind", "chat")] if kinds else []),
                   w["hive_id"], w["device"], w["state"], w["load"], w["url"])
                  for w in workers])
