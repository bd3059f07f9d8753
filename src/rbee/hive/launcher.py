"""Process launching behind a protocol, so the supervisor can be tested without processes."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Protocol

from rbee.core.private import open_private_log
from rbee.core.process import die_with_parent


class ProcessHandle(Protocol):
    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None:
        """Exit code, or None while running."""
        ...

    def send_signal(self, sig: int) -> None: ...


class Launcher(Protocol):
    def launch(self, argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...],
               log_path: Path) -> ProcessHandle: ...


class SubprocessLauncher:
    """Real child processes that die with us (PDEATHSIG) and log to a file."""

    def launch(self, argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...],
               log_path: Path) -> ProcessHandle:
        with open(open_private_log(log_path), "ab") as log:
            return subprocess.Popen(
                argv, env=env, pass_fds=pass_fds, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            )


def terminate(handle: ProcessHandle) -> None:
    if handle.poll() is None:
        handle.send_signal(signal.SIGTERM)


def kill(handle: ProcessHandle) -> None:
    if handle.poll() is None:
        handle.send_signal(signal.SIGKILL)
