"""Supervisor state machine with a fake launcher and a mocked worker /ready endpoint."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from rbee.api.cluster import SpawnWorker
from rbee.core.errors import Conflict, InvalidRequest, ModelNotFound, WorkerNotFound
from rbee.core.states import WorkerState
from rbee.hive.supervisor import Supervisor, SupervisorConfig


class FakeProcess:
    """`linger`: polls that still answer "running" after a fatal signal (a slow exit)."""

    def __init__(self, pid: int, ignore_term: bool = False, linger: int = 0) -> None:
        self.pid = pid
        self.code: int | None = None
        self.signals: list[int] = []
        self.ignore_term = ignore_term
        self.linger = linger
        self._dying: int | None = None

    def poll(self) -> int | None:
        if self.code is None and self._dying is not None:
            if self.linger > 0:
                self.linger -= 1
            else:
                self.code = self._dying
        return self.code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGKILL or not self.ignore_term:
            self._dying = -sig
            self.poll()


class FakeLauncher:
    def __init__(self, ignore_term: bool = False, linger: int = 0) -> None:
        self.launched: list[tuple[list[str], dict[str, str]]] = []
        self.processes: list[FakeProcess] = []
        self.ignore_term = ignore_term
        self.linger = linger

    def launch(self, argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...],
               log_path: Path) -> FakeProcess:
        self.launched.append((argv, env))
        self.processes.append(FakeProcess(1000 + len(self.processes), self.ignore_term,
                                          self.linger))
        return self.processes[-1]


def ready_after(polls: int) -> httpx.MockTransport:
    seen = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer wt"
        seen["n"] += 1
        ready = seen["n"] > polls
        return httpx.Response(200 if ready else 503, json={
            "ready": ready, "state": "ready" if ready else "loading", "progress": 0.5,
            "stage": "loading weights", "model": "m"})

    return httpx.MockTransport(handler)


def supervisor(tmp_path: Path, launcher: FakeLauncher, transport: httpx.MockTransport,
               grace: float = 0.1) -> Supervisor:
    config = SupervisorConfig(hive_id="h", bind_host="127.0.0.1", advertise_host="127.0.0.1",
                              home=tmp_path, worker_token="wt", stop_grace=grace,
                              default_threads=3)
    return Supervisor(config, launcher, httpx.AsyncClient(transport=transport), {"cpu", "cuda:1"})


async def wait_state(sup: Supervisor, wid: str, state: WorkerState) -> None:
    for _ in range(200):
        if sup.get(wid).state is state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{wid} never became {state}: {sup.get(wid)}")


async def test_spawn_goes_loading_then_ready(tmp_path: Path) -> None:
    launcher = FakeLauncher()
    sup = supervisor(tmp_path, launcher, ready_after(2))
    info = sup.spawn(SpawnWorker(model="rbee-fake", device="cuda:1", worker_id="w1"))
    assert info.state is WorkerState.STARTING and sup.changed.is_set()
    await wait_state(sup, "w1", WorkerState.READY)
    argv, env = launcher.launched[0]
    assert argv[argv.index("--engine") + 1] == "fake"
    assert argv[argv.index("--threads") + 1] == "3"
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["RBEE_WORKER_TOKEN"] == "wt"
    assert "RBEE_HIVE_TOKEN" not in env
    assert sup.get("w1").url.startswith("http://127.0.0.1:")
    await sup.stop_all()


async def test_unrequested_exit_is_a_crash(tmp_path: Path) -> None:
    launcher = FakeLauncher()
    sup = supervisor(tmp_path, launcher, ready_after(0))
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.READY)
    launcher.processes[0].code = -9
    await wait_state(sup, "w1", WorkerState.CRASHED)
    assert "exited with code -9" in (sup.get("w1").error or "")
    await sup.stop("w1")  # forgetting a crashed worker
    with pytest.raises(WorkerNotFound):
        sup.get("w1")


async def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    launcher = FakeLauncher(ignore_term=True)
    sup = supervisor(tmp_path, launcher, ready_after(0))
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.READY)
    stopped = await sup.stop("w1")
    assert stopped.state is WorkerState.STOPPED
    assert launcher.processes[0].signals == [signal.SIGTERM, signal.SIGKILL]


async def test_bad_spawns_fail_fast(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, FakeLauncher(), ready_after(0))
    with pytest.raises(InvalidRequest):
        sup.spawn(SpawnWorker(model="rbee-fake", device="cuda:9"))
    with pytest.raises(ModelNotFound):
        sup.spawn(SpawnWorker(model="file:/nope/x.gguf"))
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="dup"))
    with pytest.raises(Conflict):
        sup.spawn(SpawnWorker(model="rbee-fake", worker_id="dup"))
    await sup.stop_all()


async def test_load_failure_reported_by_the_worker_is_a_crash(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"ready": False, "state": "crashed", "progress": 0,
                                         "stage": "failed", "model": "m", "error": "bad gguf"})

    launcher = FakeLauncher()
    sup = supervisor(tmp_path, launcher, httpx.MockTransport(handler))
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.CRASHED)
    assert sup.get("w1").error == "bad gguf"
    await wait_exit(launcher.processes[0])  # a worker that failed to load is not left running
    assert launcher.processes[0].signals == [signal.SIGTERM]
    await asyncio.sleep(0.15)  # the exit watcher has seen the exit: still the load failure
    assert (sup.get("w1").stage, sup.get("w1").error) == ("failed", "bad gguf")
    await sup.stop_all()


def failed_load() -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(503, json={
        "ready": False, "state": "crashed", "progress": 0, "stage": "failed", "model": "m",
        "error": "bad gguf"}))


async def wait_exit(process: FakeProcess) -> None:
    for _ in range(200):
        if process.poll() is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"process {process.pid} still running; signals {process.signals}")


async def test_failed_load_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    launcher = FakeLauncher(ignore_term=True)
    sup = supervisor(tmp_path, launcher, failed_load(), grace=0.05)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.CRASHED)
    await wait_exit(launcher.processes[0])
    assert launcher.processes[0].signals == [signal.SIGTERM, signal.SIGKILL]
    await sup.stop_all()


async def test_worker_never_ready_is_ended(tmp_path: Path) -> None:
    launcher = FakeLauncher()
    sup = supervisor(tmp_path, launcher, ready_after(10**6))
    sup.config.ready_timeout = 0.05
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.CRASHED)
    assert "not ready after" in (sup.get("w1").error or "")
    await wait_exit(launcher.processes[0])
    await sup.stop_all()


async def test_stop_of_a_failed_worker_returns_once_its_process_is_gone(tmp_path: Path) -> None:
    # The failure handling is still in its grace period (SIGTERM ignored) when stop comes:
    # stop must still see the process dead before it answers.
    launcher = FakeLauncher(ignore_term=True)
    sup = supervisor(tmp_path, launcher, failed_load(), grace=0.3)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.CRASHED)
    assert launcher.processes[0].poll() is None
    await sup.stop("w1")
    assert launcher.processes[0].poll() is not None
    assert signal.SIGKILL in launcher.processes[0].signals
    with pytest.raises(WorkerNotFound):
        sup.get("w1")


async def test_stop_waits_for_a_slow_exit(tmp_path: Path) -> None:
    launcher = FakeLauncher(linger=5)
    sup = supervisor(tmp_path, launcher, ready_after(0))
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.READY)
    stopped = await sup.stop("w1")
    assert stopped.state is WorkerState.STOPPED
    assert launcher.processes[0].poll() == -signal.SIGTERM


async def test_a_retry_ends_the_previous_failed_process(tmp_path: Path) -> None:
    # Spawning the model again forgets the crashed worker; its process must still end.
    launcher = FakeLauncher(ignore_term=True)
    sup = supervisor(tmp_path, launcher, failed_load(), grace=0.3)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.CRASHED)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w2"))
    with pytest.raises(WorkerNotFound):
        sup.get("w1")
    await sup.stop_all()
    assert launcher.processes[0].poll() is not None


async def test_launch_before_the_loop_then_supervise(tmp_path: Path) -> None:
    launcher = FakeLauncher()
    sup = supervisor(tmp_path, launcher, ready_after(1))
    info = sup.launch_now(SpawnWorker(model="rbee-fake", worker_id="early"))
    assert info.state is WorkerState.LOADING and len(launcher.launched) == 1
    sup.supervise_launched()
    sup.supervise_launched()  # idempotent: one set of tasks per worker
    await wait_state(sup, "early", WorkerState.READY)
    launcher.processes[0].code = 1
    await wait_state(sup, "early", WorkerState.CRASHED)
    with pytest.raises(InvalidRequest):
        sup.launch_now(SpawnWorker(model="hf:org/repo:x.gguf"))
    await sup.stop_all()
