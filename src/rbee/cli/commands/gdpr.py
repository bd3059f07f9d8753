"""`rbee gdpr export|delete|consent|verify-receipt`: a person's data rights, by user id.

An admin key may act for anyone; any other key for its own user only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json
from rbee.core.errors import InvalidRequest

app = typer.Typer(help="GDPR: export what is held about a user, erase it (signed receipt), "
                  "record consent.", no_args_is_help=True)
Subject = Annotated[str, typer.Argument(help="The user's id (usr_...)")]
EXIT_INVALID = 2  # verify-receipt: the receipt is not one this queen issued, unchanged


def _call(ctx: typer.Context, method: str, path: str, body: dict[str, Any] | None = None,
          params: dict[str, str] | None = None) -> Any:
    c: Context = ctx.obj
    with c.client() as client:
        return client.gdpr(method, path, body, params)


@app.command()
def export(ctx: typer.Context, subject: Subject,
           output: Annotated[Path | None, typer.Option(
               "-o", "--output", help="File to write (default: stdout)")] = None) -> None:
    """Everything held about a user, as JSON."""
    def run() -> int:
        data = _call(ctx, "GET", "/export", params={"subject": subject})
        if output is None:
            print_json(data)
            return 0
        scratch = output.with_name(f".{output.name}.partial")
        try:  # personal data: readable by the owner only, and never half-written
            fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=2)
            os.replace(scratch, output)
        finally:
            scratch.unlink(missing_ok=True)
        consoles()[1].print(f"wrote {output}")
        return 0

    guarded(run)


@app.command()
def delete(ctx: typer.Context, subject: Subject) -> None:
    """Erase a user: their content, keys and account; prints the signed receipt (JSON)."""
    def run() -> int:
        print_json(_call(ctx, "POST", "/delete", {"subject": subject}))
        consoles()[1].print("keep this receipt: the queen keeps no copy "
                            "(check it with rbee gdpr verify-receipt FILE)")
        return 0

    guarded(run)


@app.command()
def consent(ctx: typer.Context, subject: Subject,
            purpose: Annotated[str, typer.Option(help="What for; 'processing' is what a "
                                                 "tenant with requires_consent asks")],
            grant: Annotated[bool, typer.Option("--grant/--revoke",
                                                help="Give or withdraw consent")]) -> None:
    """Record a user's consent decision (history is kept)."""
    guarded(lambda: print_json(_call(ctx, "POST", "/consent", {
        "subject": subject, "purpose": purpose, "granted": grant})))


@app.command("verify-receipt")
def verify_receipt(ctx: typer.Context, file: Annotated[Path, typer.Argument(
                       help="A receipt from rbee gdpr delete")]) -> None:
    """Ask the queen whether it issued this receipt, unchanged. Exit 2 when not."""
    def run() -> int:
        try:
            receipt = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidRequest(f"{file} is not a readable JSON receipt ({exc})",
                                 param="file") from None
        valid = _call(ctx, "POST", "/receipts/verify", receipt)["valid"]
        out, err = consoles()
        if valid:
            out.print("[green]receipt valid[/green]: issued by this queen, unchanged")
            return 0
        err.print("[bold red]receipt NOT valid[/bold red]: changed, or not from this queen")
        return EXIT_INVALID

    guarded(run)
