"""Worker log files (`HOME/logs/<worker id>.log`): one per worker ever started, so a hive
that starts workers for months would fill its disk. Each start keeps the newest ones."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from pathlib import Path

KEEP = 200  # logs of finished workers kept (a crash's log is what someone reads next)


def prune(folder: Path, live: Collection[str], keep: int = KEEP) -> int:
    """Delete all but the `keep` newest logs of workers not in `live` (whose files are open:
    deleting one would lose what it writes next). Returns how many went."""
    try:
        logs = [p for p in folder.glob("*.log") if p.stem not in live]
    except OSError:
        return 0
    if len(logs) <= keep:
        return 0

    def age(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # gone meanwhile
            return 0.0

    gone = 0
    for path in sorted(logs, key=age, reverse=True)[keep:]:
        with contextlib.suppress(OSError):
            path.unlink()
            gone += 1
    return gone
