"""Run blocking work that may never end (a download, a model load, a driver query) on a
thread nothing waits for at exit.

`asyncio.to_thread` uses the loop's default executor, and both `asyncio.Runner.close()`
(`shutdown_default_executor`, no timeout in Python 3.11) and the interpreter's exit join its
threads. A SIGTERMed hive in the middle of `hf_hub_download`, or a worker in the middle of
loading weights, would then live on until that call ends (hours for a big model), holding
its (V)RAM as an orphan. A daemon thread is never joined: the process exits once its server
has shut down, and the unfinished call dies with it. Chosen over `os._exit` in the daemons'
entry points because it needs no change there and still lets every `finally` and atexit
handler of the process run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_detached(fn: Callable[[], T], *, name: str) -> asyncio.Future[T]:
    """Start `fn()` on a fresh daemon thread; the future (of the running loop) gets its
    result or exception. Cancelling the future does not stop `fn`: its outcome is dropped."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(settle: Callable[[], None]) -> None:
        def unless_cancelled() -> None:
            if not future.done():  # the awaiting task may have given up meanwhile
                settle()
        # The loop may be closed already (the process is exiting): nobody wants it then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(unless_cancelled)

    def work() -> None:
        try:
            outcome = fn()
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            deliver(functools.partial(future.set_exception, exc))
            return
        deliver(lambda: future.set_result(outcome))

    threading.Thread(target=work, name=name, daemon=True).start()
    return future
