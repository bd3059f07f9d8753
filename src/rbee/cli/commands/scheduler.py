"""`rbee scheduler`: what the scheduler is doing now (policies, memory, queues)."""

from __future__ import annotations

import typer
from rich.markup import escape

from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json, table


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def scheduler(ctx: typer.Context) -> None:
    """Policies in force, the active script's counters, memory per device, admission queues."""
    c: Context = ctx.obj

    def run() -> int:
        with c.client() as client:
            c.ensure_queen(client)
            state = client.scheduler()
        if c.json:
            print_json(state)
            return 0
        out = consoles()[0]
        script = state["script"]
        out.print(f"routing: {state['routing_policy']}; placement: {state['placement_policy']}; "
                  f"memory budget per device: {_gib(state['memory_budget'])}")
        if script is None:
            out.print("script: none (built-in policies decide)")
        else:
            out.print(f"script: {script['name']} (calls {script['calls']}, failures "
                      f"{script['failures']}, no-opinion {script['fallbacks']}, busy "
                      f"{script['busy']})")
            if script["disabled"]:
                out.print(f"[bold red]script {script['name']} DISABLED[/bold red]: "
                          f"{escape(script['disabled'])}; built-in policies decide until "
                          "it is applied again (rbee script apply)")
        out.print(table("devices", ("device", "total", "free", "reserved", "available"), [
            (d["key"], _gib(d["memory_total"]), _gib(d["memory_free"]), _gib(d["reserved"]),
             _gib(d["available"])) for d in state["devices"]]))
        if state["queues"]:
            out.print(table("admission", ("model", "active", "queued"), [
                (m, q["active"], q["queued"]) for m, q in state["queues"].items()]))
        return 0

    guarded(run)
