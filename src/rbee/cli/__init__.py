"""The `rbee` command: a thin client of the queen's HTTP API."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from rbee import __version__
from rbee.cli.commands import (
    audit,
    gdpr,
    hives,
    identity,
    jobs,
    models,
    queen,
    quota,
    scripts,
    workers,
)
from rbee.cli.commands.embed import embed
from rbee.cli.commands.image import image
from rbee.cli.commands.infer import infer
from rbee.cli.commands.scheduler import scheduler
from rbee.cli.commands.speak import speak
from rbee.cli.commands.transcribe import transcribe
from rbee.cli.commands.video import video
from rbee.cli.context import Context, default_queen_url


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rbee {__version__}")
        raise typer.Exit()


def build() -> typer.Typer:
    app = typer.Typer(help="rbee: one OpenAI-compatible endpoint over every machine you own. "
                      "A queen that requires an API key reads it from RBEE_API_TOKEN.",
                      no_args_is_help=True, pretty_exceptions_enable=False)

    @app.callback()
    def root(
        ctx: typer.Context,
        queen_url: Annotated[str | None, typer.Option(
            envvar="RBEE_QUEEN_URL", help="Queen to talk to [default: local queen]")] = None,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
        no_autostart: Annotated[bool, typer.Option(
            "--no-autostart", help="Never start a local queen")] = False,
        version: Annotated[bool, typer.Option("--version", callback=_version,
                                              is_eager=True)] = False,
    ) -> None:
        # The API key comes from the environment only: never an argument, which any user
        # of the machine can read in the process list (`ps`) and the shell's history.
        token = os.environ.get("RBEE_API_TOKEN") or None
        ctx.obj = Context(queen_url=queen_url or default_queen_url(), token=token, json=json,
                          autostart=not no_autostart)

    app.command(help="Ask a model; the answer streams token by token.")(infer)
    app.command(help="Embed texts: dimensions and first values (--json: whole vectors).")(
        embed)
    app.command(help="Speak text into an audio file (streamed as it is made).")(speak)
    app.command(help="Transcribe an audio file to text (uploaded with progress).")(transcribe)
    app.command(help="Paint a picture into a file, showing each denoising step.")(image)
    app.command(help="Make a video from a prompt into an MP4 file (progress per step).")(
        video)
    app.add_typer(queen.app, name="queen")
    app.add_typer(workers.app, name="worker")
    app.add_typer(hives.app, name="hive")
    app.add_typer(scripts.app, name="script")
    app.command(help="What the scheduler is doing: policies, memory, queues.")(scheduler)
    app.add_typer(models.app, name="model")
    app.add_typer(jobs.app, name="jobs")
    app.add_typer(identity.tenants, name="tenant")
    app.add_typer(identity.users, name="user")
    app.add_typer(identity.keys, name="key")
    app.add_typer(audit.app, name="audit")
    app.add_typer(gdpr.app, name="gdpr")
    app.add_typer(quota.app, name="quota")
    app.command(name="usage", help="Usage per tenant, key, model and day (JSON, CSV).")(
        quota.usage)
    return app


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    build()(prog_name="rbee")
