"""Turn failures into one line on stderr and an exit code; Ctrl-C is 130."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer

from rbee.cli.render import fail
from rbee.core.errors import RbeeError

T = TypeVar("T")
EXIT_INTERRUPTED = 130


def guarded(fn: Callable[[], int | None]) -> None:
    try:
        code = fn() or 0
    except RbeeError as exc:
        code = fail(exc.message)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)
