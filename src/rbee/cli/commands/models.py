"""`rbee model list`."""

from __future__ import annotations

import typer

from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json, table

app = typer.Typer(help="Models rbee knows.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Built-in models and every model a worker serves."""
    c: Context = ctx.obj

    def run() -> int:
        models = c.client().run("model_list")["models"]
        if c.json:
            print_json(models)
        else:
            consoles()[0].print(table("models", ["model", "source", "engine", "workers",
                                                 "description"],
                                      [(m["id"], m["source"], m["engine"], m["workers"],
                                        m["description"]) for m in models]))
        return 0

    guarded(run)
