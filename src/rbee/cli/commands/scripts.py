"""`rbee script check|test|apply|show|list|off|delete|history|rollback`: Lua scheduling
scripts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json, when
from rbee.core.errors import InvalidRequest

app = typer.Typer(help="User scheduling scripts (Lua 5.4, sandboxed): route and place hooks.",
                  no_args_is_help=True)
File = Annotated[Path, typer.Argument(help="A .lua file defining route(job, workers) and/or "
                                      "place(model, devices)")]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read {path}: {exc}") from exc


@app.command()
def check(ctx: typer.Context, file: File) -> None:
    """Compile the script here, in the same sandbox the queen uses (no queen needed)."""
    c: Context = ctx.obj

    def run() -> int:
        from rbee.scheduler.lua import LuaPolicy

        policy = LuaPolicy(_read(file), file.stem)
        hooks = [h for h, has in (("route", policy.has_route), ("place", policy.has_place)) if has]
        if c.json:
            print_json({"name": file.stem, "ok": True, "hooks": hooks})
        else:
            consoles()[1].print(f"{file}: ok (hooks: {', '.join(hooks)})")
        return 0

    guarded(run)


@app.command()
def test(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="Script to try [default: the active "
                                                "one]")] = None,
    model: Annotated[str, typer.Option("--model", "-m")] = "",
    hive: Annotated[str | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option()] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    priority: Annotated[str, typer.Option()] = "interactive",
) -> None:
    """Dry run on the live cluster: where would this request go, and why. Changes nothing."""
    c: Context = ctx.obj

    def run() -> int:
        source = _read(file) if file else None
        r = c.run("script_test", model=model, hive_id=hive, device=device,
                       tenant=tenant, priority=priority, source=source)
        if c.json:
            print_json(r)
        else:
            _print_explanation(r)
        return 0

    guarded(run)


def _print_explanation(r: dict[str, Any]) -> None:
    out = consoles()[0]
    out.print(f"[bold]{r['model']}[/bold] (needs {r['need_bytes'] / 2**30:.2f} GiB; script: "
              f"{r['script'] or 'none'}) → [bold]{r['decision']}[/bold]")
    if r.get("script_disabled"):
        out.print(f"  [bold red]script disabled[/bold red]: {escape(r['script_disabled'])}")
    route, place = r["route"], r["place"]
    out.print(f"  route: {route['worker'] or 'no ready worker'} — "
              f"{escape(route['report']['explain'])}")
    where = f"{place['hive_id']} {place['device']}" if place["hive_id"] else "nowhere"
    out.print(f"  place: {where} — {escape(place['report']['explain'])}")
    for note in route["report"]["notes"] + place["report"]["notes"]:
        out.print(f"  note: {escape(note)}")
    for top in place["report"]["top"]:
        out.print(f"    {top['candidate']}: score {top['score']}")
    if place["eviction"]:
        ev = place["eviction"]
        out.print(f"  would stop {', '.join(ev['stop'])} to free "
                  f"{ev['frees_bytes'] / 2**30:.2f} GiB on {ev['placement']}")


@app.command()
def apply(ctx: typer.Context, file: File,
          name: Annotated[str | None, typer.Option(help="[default: the file's stem]")] = None
          ) -> None:
    """Save the script on the queen and make it active at once (hot reload)."""
    c: Context = ctx.obj

    def run() -> int:
        r = c.run("script_save", name=name or file.stem, source=_read(file),
                       activate=True)
        if c.json:
            print_json(r)
        else:
            consoles()[1].print(f"script {r['name']} active")
        return 0

    guarded(run)


@app.command()
def show(ctx: typer.Context,
         name: Annotated[str | None, typer.Argument(help="[default: the active one]")] = None
         ) -> None:
    """A stored script's source, and the active one's counters."""
    c: Context = ctx.obj

    def run() -> int:
        if name is None:
            active = [s for s in c.run("script_list")["scripts"] if s["active"]]
            if not active:
                consoles()[1].print("no active script: the built-in policy decides")
                return 0
            target = active[0]["name"]
        else:
            target = name
        r = c.run("script_get", name=target)
        if c.json:
            print_json(r)
            return 0
        out = consoles()[0]
        out.print(f"[bold]{r['name']}[/bold]{' (active)' if r['active'] else ''}")
        if "stats" in r:
            s = r["stats"]
            out.print(f"calls {s['calls']}, failures {s['failures']}, no-opinion "
                      f"{s['fallbacks']}; last error: {escape(str(s['last_error']))}")
            if s["disabled"]:
                out.print(f"[bold red]DISABLED[/bold red]: {escape(s['disabled'])}; apply it "
                          "again to enable it")
        out.print(escape(r["source"]), highlight=False)
        return 0

    guarded(run)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Stored scripts."""
    c: Context = ctx.obj

    def run() -> int:
        scripts = c.run("script_list")["scripts"]
        if c.json:
            print_json(scripts)
        else:
            for s in scripts:
                consoles()[0].print(f"{s['name']}{'  (active)' if s['active'] else ''}")
        return 0

    guarded(run)


@app.command()
def off(ctx: typer.Context) -> None:
    """Deactivate the script: the built-in policy decides again."""
    c: Context = ctx.obj

    def run() -> int:
        result = c.run("script_activate", name=None)
        if c.json:
            print_json(result)
        else:
            consoles()[1].print("no active script: the built-in policy decides")
        return 0

    guarded(run)


@app.command()
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Remove a stored script (deactivating it if active)."""
    c: Context = ctx.obj

    def run() -> int:
        result = c.run("script_delete", name=name)
        if c.json:
            print_json(result)
        else:
            consoles()[1].print(f"script {name} deleted")
        return 0

    guarded(run)


@app.command()
def history(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """A script's kept versions, newest first: when, by which key, the one in force."""
    c: Context = ctx.obj

    def run() -> int:
        result = c.run("script_history", name=name)
        if c.json:
            print_json(result)
            return 0
        out = consoles()[0]
        for v in result["versions"]:
            mark = "  (in force)" if v["in_force"] else ""
            out.print(f"v{v['version']}  {when(v['saved_at'])}  by {escape(v['saved_by'])}  "
                      f"{v['lines']} lines{mark}")
        return 0

    guarded(run)


@app.command()
def rollback(ctx: typer.Context, name: Annotated[str, typer.Argument()],
             version: Annotated[int, typer.Argument(help="A version `history` lists")]) -> None:
    """Put a kept version back in force, as the active script (admin)."""
    c: Context = ctx.obj

    def run() -> int:
        result = c.run("script_rollback", name=name, version=version)
        if c.json:
            print_json(result)
        else:
            consoles()[1].print(f"script {name} v{version} is in force and active")
        return 0

    guarded(run)
