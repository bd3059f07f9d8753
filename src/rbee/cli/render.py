"""Output for people (rich, on stderr for chatter) and for scripts (--json on stdout)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def consoles() -> tuple[Console, Console]:
    """(stdout, stderr) consoles; built per command, never at import time."""
    return Console(highlight=False), Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    return t


def fail(message: str, code: int = 1) -> int:
    err = Console(stderr=True, highlight=False)
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return code


def when(stamp: float | None) -> str:
    """A moment for people: this machine's local time to the second, with its zone ("" for
    none). --json output keeps the raw Unix time."""
    if not stamp:
        return ""
    return dt.datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
