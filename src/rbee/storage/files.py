"""File operations on the queen's state directory that need no database open.

Its own module so that the CLI (a thin HTTP client otherwise) can move a damaged database
aside while no queen runs (`rbee queen reset-db`) without importing SQLite storage.
"""

from __future__ import annotations

import time
from pathlib import Path

SIDE_FILES = ("-wal", "-shm")  # SQLite keeps these next to the database, named after it


def move_aside(path: Path, now: float | None = None) -> Path | None:
    """Rename the database (with its WAL and shared-memory files) to `<name>.aside-<time>`.

    Nothing is deleted: the old file stays for inspection or salvage. None if there was none.
    """
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    target = path.with_name(f"{path.name}.aside-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.aside-{stamp}-{n}")
    # The side files first: a WAL left next to a new database would be replayed into it.
    for suffix in SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    path.rename(target)
    return target
