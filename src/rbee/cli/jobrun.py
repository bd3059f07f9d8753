"""Running one job from the CLI: start the queen if needed, submit, show, cancel on Ctrl-C."""

from __future__ import annotations

import sys
import time
from typing import Any

from rbee.cli.context import Context
from rbee.cli.errors import EXIT_INTERRUPTED
from rbee.cli.render import consoles, print_json
from rbee.client import JobFailed, QueenClient, StreamEvent


def ready_queen(c: Context, client: QueenClient, preload: str | None) -> None:
    """Make sure a queen answers (one we start warms `preload`), saying so to people."""
    if not c.json:
        err = consoles()[1]
        with err.status("checking the queen…"):
            if c.ensure_queen(client, preload=preload):
                err.print(f"[dim]started queen at {c.queen_url}[/dim]")
    else:
        c.ensure_queen(client, preload=preload)


def submit(c: Context, client: QueenClient, operation: str, fields: dict[str, Any],
           preload: str | None) -> str:
    """Make sure a queen answers, then submit the job."""
    ready_queen(c, client, preload)
    return client.submit(operation, **fields)


def cancelled(c: Context, client: QueenClient, job_id: str) -> int:
    """Ctrl-C while following: the job is cancelled (its worker stops), exit code 130."""
    client.cancel(job_id)
    if c.json:
        print_json({"job_id": job_id, "state": "cancelled"})
    else:
        consoles()[1].print("\n[yellow]cancelled[/yellow]")
    return EXIT_INTERRUPTED


class JobPrinter:
    """Shows one job: tokens to stdout, chatter to stderr, a spinner until the answer."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.first: float | None = None
        self.result: dict[str, Any] = {}
        self.err = consoles()[1]
        self.status = self.err.status("waiting for the queen…")
        self._handlers = {"token": self._token, "narration": self._narration,
                          "progress": self._progress, "result": self._result}
        if not as_json:
            self.status.start()

    def on(self, ev: StreamEvent) -> None:
        handler = self._handlers.get(ev.event)
        if handler is not None:
            handler(ev.data)

    def _token(self, data: dict[str, Any]) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.status.stop()
        if not self.as_json:
            sys.stdout.write(data["t"])
            sys.stdout.flush()

    def _narration(self, data: dict[str, Any]) -> None:
        if not self.as_json:
            self.err.print(f"[dim]{data['actor']}: {data['message']}[/dim]")

    def _progress(self, data: dict[str, Any]) -> None:
        if "step" in data:  # a video's denoising steps
            self.status.update(f"{data['stage']}: step {data['step']} of {data['steps']} "
                               f"({data['fraction']:.0%})")
        else:
            self.status.update(f"{data['stage']} ({data['fraction']:.0%})")

    def _result(self, data: dict[str, Any]) -> None:
        self.result = data

    def follow(self, client: QueenClient, job_id: str) -> dict[str, Any] | None:
        """Show the job to its end; its result, or None once its failure was printed as JSON
        (for people, JobFailed goes on to `guarded`, which prints one line)."""
        try:
            for ev in client.run_events(job_id):
                self.on(ev)
        except JobFailed as exc:
            if self.as_json:
                print_json({"job_id": job_id, "state": exc.event, "error": exc.message})
                return None
            raise
        finally:
            self.status.stop()
        return self.result
