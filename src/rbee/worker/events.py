"""Load events to the hive: one JSON line per change, on the pipe it handed us.

The hive learns progress, readiness and a failed load from these lines instead of polling
`/ready` (which stays, for the queen and for people). After `ready` or `failed` the pipe is
closed: nothing more is said on it, and its end before `ready` tells the hive the start failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

from rbee.api.cluster import WorkerEvent

logger = logging.getLogger(__name__)
MAX_ERROR_CHARS = 4000  # the hive reads lines of up to 64 KiB; an error message never needs more


class EventPipe:
    """Writes `WorkerEvent`s to an inherited pipe fd; safe from the engine's loading thread."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._lock = threading.Lock()  # progress comes from the load thread, the end from the loop

    def send(self, event: WorkerEvent) -> None:
        if event.error is not None and len(event.error) > MAX_ERROR_CHARS:
            event = event.model_copy(update={"error": event.error[:MAX_ERROR_CHARS] + "…"})
        line = event.model_dump_json().encode() + b"\n"
        with self._lock:
            if self._fd is None:
                return
            try:
                # Blocking and whole: a line is far below the pipe's buffer, and a hive that
                # is slow to read (still starting up) should hold the load back, not lose it.
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError as exc:  # the hive stopped listening (it gave up on us, or died)
                logger.warning("cannot tell the hive: %s", exc)
                self._close()
                return
            if event.event != "progress":
                self._close()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
