"""The hive a queen starts on its own machine (zero-config localhost), and stops with it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from rbee.core.child_env import hive_env
from rbee.core.private import open_private_log
from rbee.core.process import die_with_parent, python_module
from rbee.tracing.config import TRACES_ENV

if TYPE_CHECKING:
    from rbee.queen.settings import QueenSettings

logger = logging.getLogger(__name__)
HIVE_ID = "localhost"


class LocalHive:
    def __init__(self, *, queen_url: str, port: int, token: str, worker_token: str,
                 telemetry_interval: float, log_path: Path, home: Path | None,
                 hf_endpoint: str | None, preload_model: str | None = None,
                 worker_threads: int | None = None, traces: str | None = None) -> None:
        self._argv = [*python_module("rbee.hive"), "--hive-id", HIVE_ID,
                      "--port", str(port), "--queen-url", queen_url,
                      "--telemetry-interval", str(telemetry_interval),
                      "--parent-pid", str(os.getpid())]
        if home is not None:
            self._argv += ["--home", str(home)]
        if hf_endpoint:
            self._argv += ["--hf-endpoint", hf_endpoint]
        if worker_threads:
            self._argv += ["--worker-threads", str(worker_threads)]
        # Only the first start preloads: a restarted hive gets what requests need placed on
        # it again, not a model that may since have been unloaded as idle.
        self._preload = ["--preload-model", preload_model] if preload_model else []
        # The same secrets on every start: the queen's credentials for this hive stay valid.
        # Only its own pair: not the queen's API token, which its workers would inherit.
        self._env = hive_env(token, worker_token)
        if traces is not None:  # the queen's traces URL, whichever setting gave it: the
            self._env[TRACES_ENV] = traces  # hive and (inheriting it) its workers export there
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def started(self) -> bool:
        return self.process is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        """Must run on the main thread: PDEATHSIG follows the spawning thread."""
        argv = self._argv if self.started else self._argv + self._preload
        with open(open_private_log(self._log_path), "ab") as log:
            self.process = subprocess.Popen(
                argv, env=self._env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        logger.info("local hive started (pid %s)", self.process.pid)

    def poll(self) -> int | None:
        """The exit code once it has exited (reaping it: no zombie), None while it runs."""
        return self.process.poll() if self.process is not None else None

    def kill(self) -> None:
        """SIGKILL (a hung hive cannot stop gracefully; its workers die with it: PDEATHSIG)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    async def stop(self, grace: float = 8.0) -> None:
        """SIGTERM (the hive stops its workers first), then SIGKILL after `grace`."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while proc.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            logger.warning("local hive ignored SIGTERM; killing it")
            proc.kill()
            # Not a blocking wait: a process stuck in the kernel (a wedged driver, a dead
            # NFS mount) outlives SIGKILL, and the queen's loop must not hang with it.
            deadline = loop.time() + grace
            while proc.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                logger.error("local hive (pid %s) survived SIGKILL for %.0f s; leaving it",
                             proc.pid, grace)


def local_hive_for(settings: QueenSettings, hive_token: str, worker_token: str,
                   traces: str | None = None) -> LocalHive:
    return LocalHive(
        queen_url=f"http://127.0.0.1:{settings.port}", port=settings.hive_port,
        token=hive_token, worker_token=worker_token,
        telemetry_interval=settings.telemetry_interval,
        log_path=settings.state_dir / "logs" / "hive-localhost.log",
        home=settings.hive_home, hf_endpoint=settings.hf_endpoint,
        preload_model=settings.preload_model, worker_threads=settings.worker_threads,
        traces=traces)
