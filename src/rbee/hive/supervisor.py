"""Spawn, watch and stop worker processes.

Each worker moves STARTING → LOADING → READY through `core.states`; an exit we did not ask
for is CRASHED and reported. Stopping is SIGTERM, a grace period, then SIGKILL, and returns
only once the process is gone (and reaped). A worker that fails to start (its engine could not
load the model, or it never became ready) is CRASHED *and* its process ended the same way: a
failed worker keeps its interpreter and engine libraries in memory (~45 MB) otherwise.

A worker's load progress, readiness and load failure come as events it writes to a pipe we
hand it (`--events-fd`, one JSON line each, `api.cluster.WorkerEvent`); nothing polls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from rbee.api.cluster import SpawnWorker, WorkerEvent, WorkerInfo
from rbee.core.child_env import worker_env
from rbee.core.clock import Clock, SystemClock
from rbee.core.detached import run_detached
from rbee.core.errors import Conflict, InvalidRequest, RbeeError, WorkerNotFound
from rbee.core.process import python_module
from rbee.core.states import WorkerState, can_transition
from rbee.engines.registry import check_kind, check_slots
from rbee.hive import worker_logs
from rbee.hive.downloads import resolve
from rbee.hive.launcher import Launcher, ProcessHandle, kill, terminate
from rbee.models.catalog import (
    BUILTINS,
    ModelRef,
    builtin_tokenizer_path,
    for_engine,
    parse_ref,
)
from rbee.web.serve import bind_socket

logger = logging.getLogger(__name__)
EXIT_CODE_WAIT = 0.5  # after a worker's pipe ends early: how long its exit code may take


@dataclass
class SupervisorConfig:
    hive_id: str
    bind_host: str
    advertise_host: str
    home: Path
    hf_endpoint: str | None = None
    worker_token: str | None = None
    default_threads: int | None = None
    stop_grace: float = 3.0
    ready_timeout: float = 300.0
    # Failed workers stay listed a while, so the queen and the dashboard can show why; but
    # each failing model name (a typo, a gated repository) would otherwise leave one for
    # good, in every telemetry report, until the report outgrows the queen's body limit and
    # the hive reads as down for everyone. So: for `crashed_ttl` seconds, `max_crashed` at
    # most (the oldest failure goes first).
    crashed_ttl: float = 300.0
    max_crashed: int = 50


@dataclass
class WorkerHandle:
    id: str
    spec: SpawnWorker
    ref: ModelRef
    engine: str
    state: WorkerState = WorkerState.STARTING
    url: str = ""
    model_path: str = ""
    progress: float = 0.0
    stage: str = "starting"
    error: str | None = None
    error_code: str | None = None
    process: ProcessHandle | None = None
    events: int | None = None  # our end of its event pipe, until readiness is awaited
    load: int = 0
    crashed_at: float | None = None  # monotonic seconds: when it became CRASHED
    slots: int = 1  # requests it serves at once: asked for, then what it says when ready
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def info(self, hive_id: str) -> WorkerInfo:
        memory = None
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(psutil.Error):
                memory = psutil.Process(self.process.pid).memory_info().rss
        return WorkerInfo(
            id=self.id, hive_id=hive_id, model=self.ref.name, model_path=self.model_path,
            device=self.spec.device, engine=self.engine, kind=self.ref.kind, url=self.url,
            pid=self.process.pid if self.process else None, state=self.state,
            progress=self.progress, stage=self.stage, load=self.load, slots=self.slots,
            error=self.error,
            error_code=self.error_code, memory_bytes=memory)


class Supervisor:
    def __init__(self, config: SupervisorConfig, launcher: Launcher, devices: set[str],
                 clock: Clock | None = None) -> None:
        self.config = config
        self._clock = clock or SystemClock()
        self._launcher = launcher
        self._devices = devices
        self._workers: dict[str, WorkerHandle] = {}
        self._ending: set[asyncio.Task[None]] = set()  # processes of forgotten workers
        self.changed = asyncio.Event()

    def workers(self) -> list[WorkerInfo]:
        self._prune_crashed()  # here: telemetry asks every interval, so expiry is timely
        return [w.info(self.config.hive_id) for w in self._workers.values()]

    def _prune_crashed(self) -> None:
        """Forget failed workers past `crashed_ttl`, and the oldest past `max_crashed`."""
        crashed = sorted((w for w in self._workers.values() if w.crashed_at is not None),
                         key=lambda w: w.crashed_at or 0.0)
        expired = self._clock.monotonic() - self.config.crashed_ttl
        excess = len(crashed) - self.config.max_crashed
        for i, w in enumerate(crashed):
            if i < excess or (w.crashed_at or 0.0) <= expired:
                self._forget(w)

    def get(self, worker_id: str) -> WorkerInfo:
        return self._handle(worker_id).info(self.config.hive_id)

    def _handle(self, worker_id: str) -> WorkerHandle:
        try:
            return self._workers[worker_id]
        except KeyError:
            raise WorkerNotFound(f"no worker {worker_id!r} on hive {self.config.hive_id}") from None

    def _set(self, w: WorkerHandle, state: WorkerState, stage: str | None = None) -> None:
        if w.state is not state and not can_transition(w.state, state):
            return  # e.g. a late "ready" after a stop: the stop wins
        w.state = state
        if stage is not None:
            w.stage = stage
        self.changed.set()
        if state is WorkerState.CRASHED and w.crashed_at is None:
            w.crashed_at = self._clock.monotonic()
            self._prune_crashed()

    def spawn(self, spec: SpawnWorker) -> WorkerInfo:
        """Register the worker and start it in the background; returns at once."""
        handle = self._register(spec)
        handle.tasks.append(asyncio.create_task(self._run(handle), name=f"worker-{handle.id}"))
        return handle.info(self.config.hive_id)

    def launch_now(self, spec: SpawnWorker) -> WorkerInfo:
        """Start a worker's process synchronously, before the event loop runs.

        The hive does this for the model its queen asked it to preload, ahead of its own
        heavy imports; `supervise_launched()` takes the worker over once the loop runs.
        Only for models already on this machine (no download).
        """
        handle = self._register(spec)
        if handle.ref.source == "hf":
            raise InvalidRequest("only local models can be launched before start-up")
        handle.model_path = resolve(handle.ref, cache=self.config.home / "models",
                                    hf_endpoint=None)
        self._launch(handle)
        return handle.info(self.config.hive_id)

    def supervise_launched(self) -> None:
        """Watch and await readiness of workers started by `launch_now`."""
        for w in self._workers.values():
            if w.process is not None and not w.tasks:
                w.tasks.append(asyncio.create_task(self._watch_exit(w), name=f"watch-{w.id}"))
                w.tasks.append(asyncio.create_task(self._ready_or_crash(w),
                                                   name=f"worker-{w.id}"))

    def _register(self, spec: SpawnWorker) -> WorkerHandle:
        if spec.device not in self._devices:
            raise InvalidRequest(f"hive {self.config.hive_id} has no device {spec.device!r}; "
                                 f"it has {sorted(self._devices)}", param="device")
        ref = for_engine(parse_ref(spec.model), spec.engine)
        if ref.source != "hf":  # cheap local checks answer at once; downloads run later
            resolve(ref, cache=self.config.home / "models", hf_endpoint=None)
        engine = spec.engine or ref.engine
        check_slots(engine, spec.slots)  # at once, not as a failed load a moment later
        check_kind(engine, ref.kind)
        # A crashed worker stays listed (and reported) until the next try for its model (or
        # until `crashed_ttl` passes, or `max_crashed` newer failures push it out).
        for old in [w for w in self._workers.values()
                    if w.ref.name == ref.name and w.state is WorkerState.CRASHED]:
            self._forget(old)
        worker_id = spec.worker_id or f"wrk-{uuid.uuid4().hex[:8]}"
        if worker_id in self._workers:
            raise Conflict(f"worker {worker_id} already exists")
        handle = WorkerHandle(id=worker_id, spec=spec, ref=ref, engine=engine,
                              slots=spec.slots or 1)
        self._workers[worker_id] = handle
        self.changed.set()
        return handle

    async def _run(self, w: WorkerHandle) -> None:
        try:
            w.model_path = await self._resolve(w)
            self._launch(w)
            w.tasks.append(asyncio.create_task(self._watch_exit(w), name=f"watch-{w.id}"))
            await self._wait_ready(w)
        except (RbeeError, OSError) as exc:
            await self._fail(w, exc)

    async def _ready_or_crash(self, w: WorkerHandle) -> None:
        try:
            await self._wait_ready(w)
        except (RbeeError, OSError) as exc:
            await self._fail(w, exc)

    async def _fail(self, w: WorkerHandle, exc: Exception) -> None:
        if isinstance(exc, RbeeError):
            w.error, w.error_code = exc.message, exc.code
        else:
            w.error = f"{type(exc).__name__}: {exc}"
        # Reported first (the queen is waiting for the outcome), then the process is ended:
        # a worker whose load failed still serves /ready and would stay resident for good.
        self._set(w, WorkerState.CRASHED, "failed")
        logger.warning("worker %s failed to start: %s", w.id, w.error)
        if w.process is not None:
            await self._terminate(w.process)

    async def _resolve(self, w: WorkerHandle) -> str:
        loop = asyncio.get_running_loop()

        def progress(done: int, total: int | None) -> None:
            fraction = done / total if total else 0.0
            stage = f"downloading {done / 1e6:.1f}/{(total or 0) / 1e6:.1f} MB"
            loop.call_soon_threadsafe(self._progress, w, fraction * 0.5, stage)

        w.stage = "resolving model"
        # A download cannot be cancelled: on a thread the hive's exit does not wait for
        # (core.detached), so a SIGTERM mid-download still ends the hive at once.
        cache, endpoint = self.config.home / "models", self.config.hf_endpoint
        return await run_detached(
            lambda: resolve(w.ref, cache=cache, hf_endpoint=endpoint, progress=progress),
            name=f"resolve-{w.id}")

    def _progress(self, w: WorkerHandle, fraction: float, stage: str) -> None:
        # No `changed` here: telemetry follows state changes and carries the latest progress
        # on its interval (a report per progress line would flood the queen).
        w.progress, w.stage = fraction, stage

    def _argv(self, w: WorkerHandle, fd: int, events_fd: int) -> list[str]:
        spec = w.spec
        argv = [*python_module("rbee.worker"), "--worker-id", w.id, "--model", w.ref.name,
                "--model-path", w.model_path, "--engine", w.engine, "--device", spec.device,
                "--fd", str(fd), "--events-fd", str(events_fd),
                "--parent-pid", str(os.getpid())]
        threads = spec.threads or self.config.default_threads
        if threads:
            argv += ["--threads", str(threads)]
        if spec.context_length:
            argv += ["--context-length", str(spec.context_length)]
        if spec.slots:
            argv += ["--slots", str(spec.slots)]
        if w.ref.kind != "chat":
            argv += ["--kind", w.ref.kind]
        tokenizer = builtin_tokenizer_path(w.ref.name) if w.ref.source == "builtin" else None
        if tokenizer is not None:
            argv += ["--tokenizer-path", str(tokenizer)]
        builtin = BUILTINS.get(w.ref.name)
        for key, value in builtin.sampling if builtin else ():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        return argv

    def _env(self, device: str) -> dict[str, str]:
        env = worker_env(self.config.worker_token)  # its own credential, no other secret
        if device.startswith("cuda:"):
            # The worker sees exactly one GPU, as cuda:0 (process isolation).
            env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        return env

    def _launch(self, w: WorkerHandle) -> None:
        worker_logs.prune(self.config.home / "logs", self._workers.keys())
        sock = bind_socket(self.config.bind_host, 0)
        events, their_end = os.pipe()  # both ends close-on-exec; the child gets its own copy
        try:
            port = sock.getsockname()[1]
            w.url = f"http://{self.config.advertise_host}:{port}"
            w.process = self._launcher.launch(
                self._argv(w, sock.fileno(), their_end), self._env(w.spec.device),
                (sock.fileno(), their_end), self.config.home / "logs" / f"{w.id}.log")
        except BaseException:
            os.close(events)
            raise
        finally:
            sock.close()  # the child holds its own copies: once it exits, the pipe ends
            os.close(their_end)
        w.events = events
        self._set(w, WorkerState.LOADING, "starting process")

    async def _wait_ready(self, w: WorkerHandle) -> None:
        """Read the worker's events until `ready` (or its failure, the pipe's end, or
        `ready_timeout`); progress goes to the handle as it comes."""
        if w.events is None:
            raise RbeeError(f"worker {w.id} has no event pipe")
        fd, w.events = w.events, None
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
        try:
            async with asyncio.timeout(self.config.ready_timeout):
                while not await self._on_event(w, await reader.readline()):
                    pass
        except TimeoutError:
            raise RbeeError(f"worker {w.id} not ready after {self.config.ready_timeout}s"
                            ) from None
        except ValueError as exc:  # not a WorkerEvent, or a line past the reader's 64 KiB
            raise RbeeError(f"worker {w.id} sent a malformed event: {exc}") from None
        finally:
            transport.close()  # the worker's next write (if any) fails; it says no more

    async def _on_event(self, w: WorkerHandle, line: bytes) -> bool:
        """Apply one event line; True once the worker is ready, raise if its start failed."""
        if not line:
            raise RbeeError(await self._ended_early(w))
        event = WorkerEvent.model_validate_json(line)  # a ValidationError is a ValueError
        if event.event == "failed":
            raise RbeeError(event.error or "worker failed to load")
        self._progress(w, 0.5 + 0.5 * event.progress, event.stage)  # the first half: download
        if event.event == "ready":
            w.slots = event.slots or 1
            self._set(w, WorkerState.READY, "ready")
            return True
        return False

    async def _ended_early(self, w: WorkerHandle) -> str:
        """Why the event pipe ended before `ready`. The process is exiting (or gone), so its
        exit code is normally there within milliseconds; its log's last lines say why."""
        assert w.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EXIT_CODE_WAIT
        while (code := w.process.poll()) is None and loop.time() < deadline:
            await asyncio.sleep(0.01)  # only on this failure path, and briefly
        how = f"exited with code {code}" if code is not None else "closed its event pipe"
        return f"worker process {how} before it was ready"

    async def _watch_exit(self, w: WorkerHandle) -> None:
        assert w.process is not None
        while (code := w.process.poll()) is None:
            await asyncio.sleep(0.1)
        # CRASHED already: a failed start we ended ourselves, reported and logged once.
        if w.state not in (WorkerState.STOPPING, WorkerState.STOPPED, WorkerState.CRASHED):
            w.error = w.error or f"worker process exited with code {code}"
            self._set(w, WorkerState.CRASHED, "crashed")
            logger.warning("worker %s crashed: %s", w.id, w.error)

    async def stop(self, worker_id: str) -> WorkerInfo:
        """Stop the worker and return once its process is gone, whatever state it was in."""
        w = self._handle(worker_id)
        if w.state not in (WorkerState.STOPPED, WorkerState.CRASHED):
            self._set(w, WorkerState.STOPPING, "stopping")
            for task in w.tasks:
                if task.get_name().startswith("worker-"):
                    task.cancel()
        # A crashed worker may still be running (its load failed, or its failure is still
        # being handled): "stopped" must mean the memory is free, so end it here too.
        if w.process is not None:
            await self._terminate(w.process)
        self._set(w, WorkerState.STOPPED, "stopped")
        self._forget(w)
        return w.info(self.config.hive_id)

    async def _terminate(self, process: ProcessHandle) -> None:
        """SIGTERM, `stop_grace`, SIGKILL; returns once the process has exited (poll reaps)."""
        if process.poll() is not None:
            return
        terminate(process)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.stop_grace
        while process.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if process.poll() is None:
            kill(process)
            while process.poll() is None:
                await asyncio.sleep(0.02)

    def _forget(self, w: WorkerHandle) -> None:
        for task in w.tasks:
            task.cancel()  # may interrupt a failed worker's termination: finished below
        if w.events is not None:  # launched, never awaited (stopped before the loop ran)
            os.close(w.events)
            w.events = None
        if w.process is not None and w.process.poll() is None:
            ending = asyncio.create_task(self._terminate(w.process), name=f"end-{w.id}")
            self._ending.add(ending)
            ending.add_done_callback(self._ending.discard)
        self._workers.pop(w.id, None)
        self.changed.set()

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(wid) for wid in list(self._workers)),
                             *list(self._ending), return_exceptions=True)
