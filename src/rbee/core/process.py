"""Child-process helpers shared by the queen (hive child) and the hive (worker children)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def python_module(module: str) -> list[str]:
    """argv that runs `module` with this interpreter, safe from the working directory.

    `python -m` puts the cwd first on sys.path, so a `queue.py` in the folder the queen was
    started from was imported by its children. `-P` drops exactly that entry. Not `-I`: it
    also drops PYTHONPATH (an operator's engine or plugin path), the other PYTHON* variables
    and user site-packages (a `pip install --user` rbee), none of which is the hazard.
    """
    return [sys.executable, "-P", "-m", module]


def die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM this child when its parent dies.

    This is what guarantees "no orphan worker" even when the hive is SIGKILLed. The parent
    must spawn from its main thread: the signal fires when the spawning *thread* exits.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgrp()  # own group: a Ctrl-C at the user's terminal must not reach daemons


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
