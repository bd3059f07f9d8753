"""`queen-rbee`: run the queen (and, by default, a hive on this machine)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shlex
import sys

from rbee.core import collector
from rbee.core.private import private_dir, private_umask
from rbee.queen.local_hive import LocalHive, local_hive_for
from rbee.queen.scrape_auth import refuse_open_metrics
from rbee.queen.settings import QueenSettings
from rbee.storage.db import DatabaseUnusable, connect
from rbee.tracing.daemon import endpoint_or_exit, tracing_for
from rbee.web.auth import refuse_open_listener
from rbee.web.listener import load_settings


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(QueenSettings, sys.argv[1:] if argv is None else argv, "queen-rbee")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s queen %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # INFO logs every SSH channel
    refuse_open_listener(settings.host, settings.api_token, "queen-rbee")
    refuse_open_metrics(settings)
    collector.tune()
    # Before anything is created: queen.db (and SQLite's side files), logs and the pid file
    # hold every hive's token and users' prompts; an older install's modes are tightened.
    private_umask()
    private_dir(settings.state_dir, tighten_tree=True)
    check_database(settings)
    traces = endpoint_or_exit("queen-rbee", os.environ, settings.otlp_endpoint,
                              "--otlp-endpoint / RBEE_QUEEN_OTLP_ENDPOINT")
    # Secrets come through the environment, never argv (argv is world-readable in ps).
    hive_token = os.environ.get("RBEE_QUEEN_HIVE_TOKEN") or secrets.token_urlsafe(32)
    worker_token = os.environ.get("RBEE_QUEEN_WORKER_TOKEN") or secrets.token_urlsafe(32)
    local = None
    if settings.local_hive:
        # Start the hive before our own heavy imports: its start-up overlaps ours, which is
        # most of a cold `rbee infer`. It dies with us if we fail to start.
        local = local_hive_for(settings, hive_token, worker_token, traces)
        local.start()
    _serve(settings, hive_token, worker_token, local, traces)


def check_database(settings: QueenSettings) -> None:
    """Exit with one line, naming the file and the way out, on a database we cannot trust.

    Before anything starts (no hive to clean up), and once: every page is read here.
    """
    try:
        connect(settings.state_dir / "queen.db", verify=True).close()
    except DatabaseUnusable as exc:
        fix = f"; move it aside with: {reset_command(settings)}" if exc.damaged else ""
        sys.exit(f"queen-rbee: {exc.message}{fix}")


def reset_command(settings: QueenSettings) -> str:
    """The CLI command that moves this queen's database aside (it reads the same env)."""
    if settings.state_dir == QueenSettings().state_dir:
        return "rbee queen reset-db"
    return f"rbee queen reset-db --state-dir {shlex.quote(str(settings.state_dir))}"


def _serve(settings: QueenSettings, hive_token: str, worker_token: str,
           local: LocalHive | None, traces: str | None) -> None:
    from rbee.queen.app import create_app
    from rbee.web.serve import serve

    pid_file = settings.state_dir / "queen.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    tracing = tracing_for("queen-rbee", traces)
    try:
        app = create_app(settings, hive_token=hive_token, worker_token=worker_token,
                         local_hive=local, tracing=tracing)
        collector.settle()  # imports and the app: never walked by a collection again
        serve(app, host=settings.host, port=settings.port, limits=settings,
              trusted_proxies=[str(net) for net in settings.trusted_proxies])
    finally:
        with contextlib.suppress(FileNotFoundError):
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
