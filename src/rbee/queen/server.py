"""`queen-rbee`: run the queen (and, by default, a hive on this machine)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from rbee.queen.app import create_app
from rbee.queen.settings import QueenSettings
from rbee.web.auth import refuse_open_listener
from rbee.web.serve import serve


def main(argv: list[str] | None = None) -> None:
    settings = QueenSettings(_cli_parse_args=sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s queen %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    refuse_open_listener(settings.host, settings.api_token, "queen-rbee")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    pid_file = settings.state_dir / "queen.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        # Secrets come through the environment, never argv (argv is world-readable in ps).
        app = create_app(settings, hive_token=os.environ.get("RBEE_QUEEN_HIVE_TOKEN"),
                         worker_token=os.environ.get("RBEE_QUEEN_WORKER_TOKEN"))
        serve(app, host=settings.host, port=settings.port)
    finally:
        with contextlib.suppress(FileNotFoundError):
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
