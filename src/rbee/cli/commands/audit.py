"""`rbee audit verify|export|list`: the queen's tamper-evident audit log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json, table, when
from rbee.core.audit_chain import read_lines, verify_export

app = typer.Typer(help="The audit log: verify its hash chain, export it, list entries.",
                  no_args_is_help=True)
EXIT_BROKEN = 2  # the chain does not verify (1: the command itself failed)


@app.command()
def verify(ctx: typer.Context,
           archives: Annotated[bool, typer.Option(
               help="Walk the archive files first (slower: years of entries)")] = False
           ) -> None:
    """Walk the chain; name the first entry that does not match. Exit 2 when broken."""
    c: Context = ctx.obj

    def run() -> int:
        with c.client() as client:
            verdict = client.audit_verify(archives)
        if c.json:
            print_json(verdict)
        else:
            _show(verdict)
        return 0 if verdict["ok"] else EXIT_BROKEN

    guarded(run)


def _show(verdict: dict[str, Any]) -> None:
    out, err = consoles()
    head = verdict["head"]
    if verdict["ok"]:
        out.print(f"[green]audit chain intact[/green]: {verdict['entries']} entries, head "
                  f"#{head['seq']} {head['hash'][:16]}…"
                  + (f", {len(verdict['archives'])} archive files" if verdict["archives"]
                     else ""))
        return
    problem = verdict["problem"]
    err.print(f"[bold red]audit chain broken at entry {problem['seq']}[/bold red] "
              f"({problem['kind']}): {escape(problem['message'])}")
    err.print(f"entries verified before it: {verdict['entries']} (through #{head['seq']})")


@app.command()
def export(ctx: typer.Context,
           output: Annotated[Path, typer.Option("-o", "--output", help="File to write "
                                                "(JSON lines; the chain head first)")]
           ) -> None:
    """Write the audit log for an auditor, then check the file offline as they would."""
    c: Context = ctx.obj

    def run() -> int:
        scratch = output.with_name(f".{output.name}.partial")
        try:
            with c.client() as client, open(scratch, "wb") as f:
                client.audit_export(f)
            os.replace(scratch, output)  # never a half-written export under its name
        finally:
            scratch.unlink(missing_ok=True)
        verdict = verify_export(read_lines(output)).to_json()
        if c.json:
            print_json({"file": str(output), **verdict})
        else:
            _show(verdict)
            consoles()[0].print(f"wrote {output} (verify it anywhere: python -m "
                                "rbee.core.audit_chain FILE)")
        return 0 if verdict["ok"] else EXIT_BROKEN

    guarded(run)


@app.command("list")
def list_(ctx: typer.Context,
          action: Annotated[str | None, typer.Option(help="Prefix, e.g. admin.")] = None,
          outcome: Annotated[str | None, typer.Option(help="ok|error|denied|cancelled")]
          = None,
          after: Annotated[int, typer.Option(help="Entries after this seq")] = 0,
          limit: Annotated[int, typer.Option(min=1, max=1000)] = 50) -> None:
    """Audit entries, oldest first from `--after`."""
    c: Context = ctx.obj

    def run() -> int:
        with c.client() as client:
            page = client.audit_entries(action=action, outcome=outcome, after=after,
                                        limit=limit)
        if c.json:
            print_json(page)
            return 0
        consoles()[0].print(table("audit", ("seq", "at", "action", "outcome", "tenant",
                                            "subject"),
                                  [(e["seq"], when(e["at"]), e["action"], e["outcome"],
                                    e["tenant"], e["subject"]) for e in page["data"]]))
        return 0

    guarded(run)
