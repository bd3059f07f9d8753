"""Supervisor state machine with a fake launcher whose workers write their load events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from rbee.api.cluster import SpawnWorker
from rbee.core.clock import FakeClock
from rbee.core.errors import Conflict, InvalidRequest, ModelNotFound, WorkerNotFound
from rbee.core.states import WorkerState
from rbee.hive.supervisor import Supervisor, SupervisorConfig

Event = dict[str, Any]
LOADED: list[Event] = [{"event": "progress", "progress": 0.5, "stage": "loading weights"},
                       {"event": "ready", "progress": 1.0, "stage": "ready"}]
FAILED: list[Event] = [{"event": "progress", "progress": 0.2, "stage": "loading weights"},
                       {"event": "failed", "stage": "failed", "error": "bad gguf"}]


class FakeProcess:
    """A worker process that writes its load events to the pipe the hive passed it.

    `linger`: polls that still answer "running" after a fatal signal (a slow exit). Its end
    of the event pipe closes after `ready`/`failed` (as a worker's does) or when it dies.
    """

    def __init__(self, pid: int, events_fd: int, ignore_term: bool = False,
                 linger: int = 0) -> None:
        self.pid = pid
        self.code: int | None = None
        self.signals: list[int] = []
        self.ignore_term = ignore_term
        self.linger = linger
        self._dying: int | None = None
        self._events: int | None = events_fd

    def say(self, **event: Any) -> None:
        assert self._events is not None, "the worker already closed its event pipe"
        os.write(self._events, json.dumps(event).encode() + b"\n")
        if event["event"] != "progress":
            self.close_events()

    def close_events(self) -> None:
        fd, self._events = self._events, None
        if fd is not None:
            os.close(fd)

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
            self.close_events()  # the kernel closes a dying process's fds
            self.poll()


class FakeLauncher:
    """Starts FakeProcesses; each says `script` on its event pipe at once (the pipe holds it
    until the hive reads, as it does for a worker started before the hive's loop runs)."""

    def __init__(self, script: list[Event] | None = None, ignore_term: bool = False,
                 linger: int = 0) -> None:
        self.launched: list[tuple[list[str], dict[str, str]]] = []
        self.processes: list[FakeProcess] = []
        self.script = LOADED if script is None else script
        self.ignore_term = ignore_term
        self.linger = linger

    def launch(self, argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...],
               log_path: Path) -> FakeProcess:
        self.launched.append((argv, env))
        events_fd = int(argv[argv.index("--events-fd") + 1])
        assert events_fd in pass_fds
        # The child's own copy: the hive closes its end once the process has started.
        process = FakeProcess(1000 + len(self.processes), os.dup(events_fd), self.ignore_term,
                              self.linger)
        for event in self.script:
            process.say(**event)
        self.processes.append(process)
        return process


def supervisor(tmp_path: Path, launcher: FakeLauncher, grace: float = 0.1) -> Supervisor:
    config = SupervisorConfig(hive_id="h", bind_host="127.0.0.1", advertise_host="127.0.0.1",
                              home=tmp_path, worker_token="wt", stop_grace=grace,
                              default_threads=3)
    return Supervisor(config, launcher, {"cpu", "cuda:1"})


async def wait_state(sup: Supervisor, wid: str, state: WorkerState) -> None:
    for _ in range(200):
        if sup.get(wid).state is state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{wid} never became {state}: {sup.get(wid)}")


async def test_spawn_goes_loading_then_ready(tmp_path: Path) -> None:
    launcher = FakeLauncher()
    sup = supervisor(tmp_path, launcher)
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
    sup = supervisor(tmp_path, launcher)
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
    sup = supervisor(tmp_path, launcher)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.READY)
    stopped = await sup.stop("w1")
    assert stopped.state is WorkerState.STOPPED
    assert launcher.processes[0].signals == [signal.SIGTERM, signal.SIGKILL]


async def test_bad_spawns_fail_fast(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, FakeLauncher())
    with pytest.raises(InvalidRequest):
        sup.spawn(SpawnWorker(model="rbee-fake", device="cuda:9"))
    with pytest.raises(ModelNotFound):
        sup.spawn(SpawnWorker(model="file:/nope/x.gguf"))
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="dup"))
    with pytest.raises(Conflict):
        sup.spawn(SpawnWorker(model="rbee-fake", worker_id="dup"))
    await sup.stop_all()


async def test_load_failure_reported_by_the_worker_is_a_crash(tmp_path: Path) -> None:
    launcher = FakeLauncher(FAILED)
    sup = supervisor(tmp_path, launcher)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.CRASHED)
    assert sup.get("w1").error == "bad gguf"
    await wait_exit(launcher.processes[0])  # a worker that failed to load is not left running
    assert launcher.processes[0].signals == [signal.SIGTERM]
    await asyncio.sleep(0.15)  # the exit watcher has seen the exit: still the load failure
    assert (sup.get("w1").stage, sup.get("w1").error) == ("failed", "bad gguf")
    await sup.stop_all()


async def wait_exit(process: FakeProcess) -> None:
    for _ in range(200):
        if process.poll() is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"process {process.pid} still running; signals {process.signals}")


async def test_failed_load_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    launcher = FakeLauncher(FAILED, ignore_term=True)
    sup = supervisor(tmp_path, launcher, grace=0.05)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.CRASHED)
    await wait_exit(launcher.processes[0])
    assert launcher.processes[0].signals == [signal.SIGTERM, signal.SIGKILL]
    await sup.stop_all()


async def test_worker_never_ready_is_ended(tmp_path: Path) -> None:
    launcher = FakeLauncher(LOADED[:1])  # loading, and never a word more
    sup = supervisor(tmp_path, launcher)
    sup.config.ready_timeout = 0.05
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.CRASHED)
    assert "not ready after" in (sup.get("w1").error or "")
    await wait_exit(launcher.processes[0])
    await sup.stop_all()


async def test_stop_of_a_failed_worker_returns_once_its_process_is_gone(tmp_path: Path) -> None:
    # The failure handling is still in its grace period (SIGTERM ignored) when stop comes:
    # stop must still see the process dead before it answers.
    launcher = FakeLauncher(FAILED, ignore_term=True)
    sup = supervisor(tmp_path, launcher, grace=0.3)
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
    sup = supervisor(tmp_path, launcher)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.READY)
    stopped = await sup.stop("w1")
    assert stopped.state is WorkerState.STOPPED
    assert launcher.processes[0].poll() == -signal.SIGTERM


async def test_a_retry_ends_the_previous_failed_process(tmp_path: Path) -> None:
    # Spawning the model again forgets the crashed worker; its process must still end.
    launcher = FakeLauncher(FAILED, ignore_term=True)
    sup = supervisor(tmp_path, launcher, grace=0.3)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.CRASHED)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w2"))
    with pytest.raises(WorkerNotFound):
        sup.get("w1")
    await sup.stop_all()
    assert launcher.processes[0].poll() is not None


async def test_launch_before_the_loop_then_supervise(tmp_path: Path) -> None:
    launcher = FakeLauncher()
    sup = supervisor(tmp_path, launcher)
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


async def eventually(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} never happened")


async def test_progress_lines_update_the_handle_as_they_come(tmp_path: Path) -> None:
    # Nothing listens at the worker's URL (the fake never serves HTTP): whatever the hive
    # learns comes from the pipe, with no request to /ready.
    launcher = FakeLauncher([])
    sup = supervisor(tmp_path, launcher)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.LOADING)
    worker = launcher.processes[0]
    worker.say(event="progress", progress=0.25, stage="importing llama.cpp")
    # The first half of the bar is the download; the worker's load is the second half.
    await eventually(lambda: sup.get("w1").progress == 0.625, "progress 0.625")
    assert sup.get("w1").stage == "importing llama.cpp"
    worker.say(event="progress", progress=0.9, stage="evaluating the chat preamble")
    await eventually(lambda: sup.get("w1").stage == "evaluating the chat preamble", "stage")
    assert sup.get("w1").progress == 0.95 and sup.get("w1").state is WorkerState.LOADING
    worker.say(event="ready", progress=1.0, stage="ready")
    await wait_state(sup, "w1", WorkerState.READY)
    assert (sup.get("w1").progress, sup.get("w1").stage) == (1.0, "ready")
    await sup.stop_all()


async def test_the_pipe_ending_before_ready_is_a_crash(tmp_path: Path) -> None:
    launcher = FakeLauncher(LOADED[:1])
    sup = supervisor(tmp_path, launcher)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.LOADING)
    launcher.processes[0].close_events()  # still running, but it will never say "ready"
    await wait_state(sup, "w1", WorkerState.CRASHED)
    assert sup.get("w1").error == "worker process closed its event pipe before it was ready"
    await wait_exit(launcher.processes[0])  # and it is ended
    await sup.stop_all()


async def test_a_worker_that_dies_while_loading_is_a_crash_with_its_exit_code(
        tmp_path: Path) -> None:
    launcher = FakeLauncher(LOADED[:1])
    sup = supervisor(tmp_path, launcher)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.LOADING)
    worker = launcher.processes[0]
    worker.code = 1
    worker.close_events()
    await wait_state(sup, "w1", WorkerState.CRASHED)
    assert "exited with code 1" in (sup.get("w1").error or "")
    assert sup.get("w1").stage in ("failed", "crashed")  # whichever noticed first
    await sup.stop_all()


async def test_a_malformed_event_fails_the_start(tmp_path: Path) -> None:
    launcher = FakeLauncher([{"event": "progress", "progress": 7}])  # past 1: not an event
    sup = supervisor(tmp_path, launcher)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.CRASHED)
    assert "malformed event" in (sup.get("w1").error or "")
    await wait_exit(launcher.processes[0])
    await sup.stop_all()


async def test_a_stop_while_loading_closes_the_pipe(tmp_path: Path) -> None:
    launcher = FakeLauncher(LOADED[:1], ignore_term=True)
    sup = supervisor(tmp_path, launcher, grace=0.01)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.LOADING)
    worker = launcher.processes[0]
    write_end = worker._events
    assert write_end is not None
    fd = os.dup(write_end)  # a write end that outlives the fake's own (closed on kill)
    try:
        await sup.stop("w1")
        with pytest.raises(BrokenPipeError):  # nobody reads: the hive closed its end
            os.write(fd, b"{}\n")
    finally:
        os.close(fd)


async def test_launched_before_the_loop_then_stopped_leaves_no_pipe_open(
        tmp_path: Path) -> None:
    launcher = FakeLauncher([], ignore_term=True)
    sup = supervisor(tmp_path, launcher, grace=0.01)
    sup.launch_now(SpawnWorker(model="rbee-fake", worker_id="early"))
    fd = os.dup(launcher.processes[0]._events)  # type: ignore[arg-type]
    try:
        await sup.stop("early")  # before supervise_launched: nobody ever read the pipe
        with pytest.raises(BrokenPipeError):
            os.write(fd, b"{}\n")
    finally:
        os.close(fd)


async def test_the_slots_a_worker_says_it_serves_are_in_its_info(tmp_path: Path) -> None:
    launcher = FakeLauncher([{"event": "ready", "progress": 1.0, "stage": "ready",
                              "slots": 32}])
    sup = supervisor(tmp_path, launcher)
    assert sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1")).slots == 1
    await wait_state(sup, "w1", WorkerState.READY)
    assert sup.get("w1").slots == 32 and sup.workers()[0].slots == 32
    argv = launcher.launched[0][0]
    assert "--slots" not in argv  # the engine's own number
    await sup.stop_all()


async def test_slots_asked_for_at_spawn_go_to_the_worker_and_are_checked(
        tmp_path: Path) -> None:
    launcher = FakeLauncher()
    sup = supervisor(tmp_path, launcher)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1", slots=4))
    await wait_state(sup, "w1", WorkerState.READY)
    argv = launcher.launched[0][0]
    assert argv[argv.index("--slots") + 1] == "4"
    with pytest.raises(InvalidRequest, match="at most 1"):  # llama.cpp: one at a time
        sup.spawn(SpawnWorker(model="rbee-fake", engine="llama_cpp", slots=2))
    await sup.stop_all()


def failing_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `hf:` model is missing on the hub (a typo, a 404, a gated repository)."""
    def resolve(ref: Any, **_: Any) -> str:
        raise ModelNotFound(f"{ref.name} not found on the hub", param="model")
    monkeypatch.setattr("rbee.hive.supervisor.resolve", resolve)


async def test_failed_downloads_of_many_names_leave_a_bounded_list(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing_hub(monkeypatch)
    sup = supervisor(tmp_path, FakeLauncher())
    names = [f"hf:tenant/typo-{i}:model.gguf" for i in range(1000)]
    for name in names:
        sup.spawn(SpawnWorker(model=name, worker_id=name.split(":")[1].split("/")[1]))
        await asyncio.sleep(0)  # let each fail as it would under a stream of requests
    for _ in range(200):
        if all(w.state is WorkerState.CRASHED for w in sup.workers()):
            break
        await asyncio.sleep(0.01)
    listed = sup.workers()
    kept = 50  # the default cap: every telemetry report stays small
    assert len(listed) == kept
    assert all(w.state is WorkerState.CRASHED for w in listed)
    # The newest failures are the ones kept: the one a user just hit says why.
    assert {w.model for w in listed} == set(names[-kept:])
    last = sup.get("typo-999")
    assert last.error == f"{names[-1]} not found on the hub" and last.error_code
    await sup.stop_all()


async def test_a_failed_worker_is_listed_for_a_while_then_forgotten(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing_hub(monkeypatch)
    clock = FakeClock()
    config = SupervisorConfig(hive_id="h", bind_host="127.0.0.1", advertise_host="127.0.0.1",
                              home=tmp_path, crashed_ttl=300.0)
    sup = Supervisor(config, FakeLauncher(), {"cpu"}, clock=clock)
    sup.spawn(SpawnWorker(model="hf:org/gated:model.gguf", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.CRASHED)
    sup.changed.clear()
    clock.advance(299.0)
    assert [w.id for w in sup.workers()] == ["w1"]  # the queen and dashboard can show why
    assert not sup.changed.is_set()
    clock.advance(2.0)
    assert sup.workers() == []
    assert sup.changed.is_set()  # its going is reported at once
    with pytest.raises(WorkerNotFound):
        sup.get("w1")


async def test_starting_a_worker_prunes_old_worker_logs(tmp_path: Path) -> None:
    from rbee.hive.worker_logs import KEEP

    logs = tmp_path / "logs"
    logs.mkdir()
    for n in range(KEEP + 50):
        (logs / f"old-{n}.log").write_text("x")
    sup = supervisor(tmp_path, FakeLauncher())
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.READY)
    assert len(list(logs.glob("old-*.log"))) == KEEP
    await sup.stop_all()
