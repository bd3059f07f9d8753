"""Find a ready worker for a model, placing and starting one when none exists."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rbee.api.cluster import SpawnWorker, WorkerInfo
from rbee.api.jobs import Placement as JobPlacement
from rbee.core.errors import (
    EngineError,
    InvalidRequest,
    ModelNotFound,
    NoCapacity,
    NoRegionCapacity,
    UpstreamError,
    WorkerNotFound,
    from_envelope,
)
from rbee.core.states import WorkerState
from rbee.models.catalog import CPU_ONLY_ENGINES, DIFFUSERS_VIDEO, ModelRef, public_model
from rbee.queen.actor import Actor
from rbee.queen.decision import PlacementPlan, decide_placement
from rbee.queen.hive_client import HiveClient
from rbee.queen.policy import JobFacts, SchedulingPolicy
from rbee.queen.quotas import Account
from rbee.queen.registry import Registry
from rbee.scheduler.eviction import Eviction
from rbee.scheduler.placement import Placement, PlaceMode, PlaceRequest
from rbee.scheduler.report import Report
from rbee.scheduler.routing import RouteRequest
from rbee.scheduler.snapshot import ClusterSnapshot

if TYPE_CHECKING:
    from rbee.tracing.tracer import Tracing

ASK_EVERY = 1.0  # seconds without telemetry before a starting worker's hive is asked
MAX_MODELS_TRACKED = 1024  # per-model locks and estimates kept before pruning
_STARTING = (WorkerState.STARTING, WorkerState.LOADING)


class Narrator(Protocol):
    def narrate(self, action: str, message: str, actor: str = "queen") -> None: ...

    def progress(self, stage: str, fraction: float) -> None: ...


class Observer(Protocol):
    """What the dispatcher reports to the metrics (queen.metrics.QueenMetrics)."""

    def decided(self, decision: str, seconds: float) -> None: ...

    def loaded(self, model: str, seconds: float) -> None: ...


class Silent:
    """Narration sink for requests nobody watches (the OpenAI endpoints)."""

    def narrate(self, action: str, message: str, actor: str = "queen") -> None:
        return None

    def progress(self, stage: str, fraction: float) -> None:
        return None


@dataclass(frozen=True)
class Hints:
    hive_id: str | None = None
    device: str | None = None
    worker_id: str | None = None
    threads: int | None = None
    slots: int | None = None  # requests the new worker serves at once (engines that batch)
    mode: PlaceMode = "pin"  # how hive_id/device bind a new worker's placement
    keep_warm: bool = False
    job: JobFacts | None = None
    actor: Actor | None = None  # who asked, for the audit log (queen.routes.openai.hints_for)
    account: Account | None = None  # whose quotas the request books on (None: nobody's)


def placement_hints(op: JobPlacement) -> Hints:
    """The hints of a job that reaches a worker (its placement fields, for its tenant)."""
    return Hints(hive_id=op.hive_id, device=op.device, worker_id=op.worker_id,
                 mode=op.placement, job=JobFacts(tenant=op.tenant, priority=op.priority))


Estimator = Callable[[ModelRef], int]  # bytes a model needs on a device
# The regions a tenant (by name) may run in; None: anywhere (queen.identity.KeyRing).
Residency = Callable[[str], frozenset[str] | None]


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


class Dispatcher:
    def __init__(self, registry: Registry, hives: HiveClient, *, spawn_timeout: float,
                 default_threads: int | None, hive_wait: float = 20.0,
                 policy: SchedulingPolicy | None = None, estimator: Estimator | None = None,
                 keep_warm_models: frozenset[str] = frozenset(),
                 gpu_overhead: int = 0, ask_every: float = ASK_EVERY,
                 residency: Residency | None = None, observer: Observer | None = None,
                 tracing: Tracing | None = None) -> None:
        self._ask_every = ask_every
        self._tracing = tracing  # spans for the decision, a placement, a start (None: off)
        self._observer = observer
        self._spawned_at: dict[str, float] = {}  # worker → when its hive was asked (loop time)
        self.evictions = 0  # workers stopped to make room (read by the metrics at scrape)
        self._hive_wait = hive_wait
        self._registry = registry
        self._hives = hives
        self._spawn_timeout = spawn_timeout
        self._threads = default_threads
        self._model_locks: dict[str, asyncio.Lock] = {}
        # Decide-and-reserve is one step: a script decides on its own thread (an await), and
        # a placement deciding meanwhile would see the memory this one is about to take.
        self._placing = asyncio.Lock()
        self.policy = policy or SchedulingPolicy()
        self._estimator = estimator or (lambda ref: 0)
        self._estimates: dict[str, int] = {}
        self._keep_warm_models = keep_warm_models
        self._gpu_overhead = gpu_overhead
        self._residency: Residency = residency or (lambda _tenant: None)

    def regions_for(self, job: JobFacts | None) -> frozenset[str] | None:
        """The regions a request's tenant may run in (None: anywhere)."""
        return self._residency(job.tenant) if job is not None and job.tenant else None

    def _within(self, snapshot: ClusterSnapshot, regions: frozenset[str] | None
                ) -> ClusterSnapshot:
        return snapshot if regions is None else snapshot.within(regions)

    def _check_region(self, ref: ModelRef, job: JobFacts | None) -> None:
        """A tenant bound to regions where no hive is up gets that said, not a worker
        elsewhere and not a long wait."""
        regions = self.regions_for(job)
        hives = self._registry.snapshot(memory=False, eviction=False).hives
        if regions is None or any(h.up and h.region in regions for h in hives):
            return
        err = NoRegionCapacity(f"tenant {job.tenant if job else ''} may only run in "
                               f"{', '.join(sorted(regions))}, and no hive there is up to "
                               f"serve {ref.name}")
        err.retry_after = 10.0
        raise err

    def need(self, ref: ModelRef) -> int:
        """Bytes to reserve: what workers of this model measured, else the estimate."""
        learned = self._registry.reservations.learned(ref.name)
        if learned is not None:
            return learned
        if ref.name not in self._estimates:
            if len(self._estimates) >= MAX_MODELS_TRACKED:  # made-up names must not pile up
                self._estimates.clear()
            self._estimates[ref.name] = self._estimator(ref)
        return self._estimates[ref.name]

    async def worker_for(self, ref: ModelRef, hints: Hints, narrator: Narrator) -> WorkerInfo:
        if self._tracing is None:
            return await self._worker_for(ref, hints, narrator)
        with self._tracing.step("rbee.schedule", {"rbee.model": public_model(ref.name)}
                                ) as span:
            info = await self._worker_for(ref, hints, narrator)
            if span is not None:
                span.set_attributes({"rbee.worker.id": info.id, "rbee.hive.id": info.hive_id,
                                     "rbee.device": info.device})
            return info

    async def _worker_for(self, ref: ModelRef, hints: Hints, narrator: Narrator
                          ) -> WorkerInfo:
        found = await self._route(ref, hints, narrator)
        if found is not None:
            return found
        if hints.worker_id is not None:
            raise WorkerNotFound(f"worker {hints.worker_id!r} is not ready for {ref.name}",
                                 param="worker_id")
        # One placement per model at a time: concurrent first requests share one new worker.
        async with self._model_lock(ref.name):
            await self._wait_for_hives(narrator)
            self._check_region(ref, hints.job)
            found = await self._route(ref, hints, narrator)
            if found is not None:
                return found
            starting = self._starting(ref, hints)
            if starting is None:
                narrator.narrate("route", f"no worker serves {ref.name}; placing one")
                starting = await self.spawn(ref, hints, narrator)
            return await self.wait_ready(starting, narrator)

    def _model_lock(self, model: str) -> asyncio.Lock:
        lock = self._model_locks.get(model)
        if lock is None:
            if len(self._model_locks) >= MAX_MODELS_TRACKED:  # drop the ones nobody uses
                for name in [n for n, held in self._model_locks.items() if _unused(held)]:
                    del self._model_locks[name]
            lock = self._model_locks[model] = asyncio.Lock()
        return lock

    async def _route(self, ref: ModelRef, hints: Hints, narrator: Narrator) -> WorkerInfo | None:
        req = RouteRequest(model=ref.name, hive_id=hints.hive_id, device=hints.device,
                           worker_id=hints.worker_id)
        # Built-in routing needs no memory accounting: a lighter snapshot on the hot path.
        snapshot = self._within(self._registry.snapshot(memory=self.policy.routes_by_memory,
                                                        eviction=False),
                                self.regions_for(hints.job))
        started = time.perf_counter()
        view, report = await self.policy.route(snapshot, req, hints.job)
        if self._observer is not None:
            self._observer.decided("route", time.perf_counter() - started)
        for note in report.notes:  # a script's log() lines and failures, on the job stream
            narrator.narrate("route", note)
        return view.info if view else None

    def _starting(self, ref: ModelRef, hints: Hints) -> WorkerInfo | None:
        regions = self.regions_for(hints.job)
        for w in self._registry.workers():
            if regions is not None and self._registry.hive_region(w.hive_id) not in regions:
                continue
            if (w.model == ref.name and w.state in _STARTING
                    and hints.hive_id in (None, w.hive_id) and hints.device in (None, w.device)
                    and self._registry.is_up(w.hive_id)):
                return w
        return None

    async def _wait_for_hives(self, narrator: Narrator) -> None:
        """A queen that just started its local hive waits for it to register (bounded)."""
        if self._registry.hive_ids():
            return
        narrator.narrate("wait", "waiting for a hive to register")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._hive_wait
        while not self._registry.hive_ids() and (left := deadline - loop.time()) > 0:
            await self._registry.wait_change(left)

    async def _await_suspects(self, narrator: Narrator) -> bool:
        """A hive suspected after one of its workers failed reports again within an interval
        if it is alive: wait for that (bounded) rather than refuse. True if one cleared."""
        suspects = set(self._registry.suspects())
        if not suspects:
            return False
        narrator.narrate("wait", f"waiting for {', '.join(sorted(suspects))} to report")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._registry.down_after
        while (left := deadline - loop.time()) > 0:
            await self._registry.wait_change(left)
            if not suspects & set(self._registry.suspects()):
                return True
        return False

    def place_request(self, ref: ModelRef, hints: Hints) -> PlaceRequest:
        hive, device, mode = hints.hive_id, hints.device, hints.mode
        if ref.engine in CPU_ONLY_ENGINES:
            # Pinned to a CPU: placed on a GPU, it would hold GPU memory and run on the CPU.
            if device not in (None, "cpu"):
                raise InvalidRequest(f"{ref.name} runs on the CPU only (engine {ref.engine}), "
                                     f"not on {device}", param="device")
            hive, device, mode = hive if mode == "pin" else None, "cpu", "pin"
        return PlaceRequest(ref.name, hive, device, self.need(ref), mode,
                            gpu_overhead=self._gpu_overhead)

    async def spawn(self, ref: ModelRef, hints: Hints, narrator: Narrator,
                    engine: str | None = None) -> WorkerInfo:
        """Decide where a new worker of `ref` goes and have its hive start it."""
        if self._tracing is None:
            return await self._spawn(ref, hints, narrator, engine)
        with self._tracing.step("rbee.place", {"rbee.model": public_model(ref.name)}) as span:
            info = await self._spawn(ref, hints, narrator, engine)
            if span is not None:
                span.set_attributes({"rbee.worker.id": info.id, "rbee.hive.id": info.hive_id,
                                     "rbee.device": info.device})
            return info

    async def _spawn(self, ref: ModelRef, hints: Hints, narrator: Narrator,
                     engine: str | None) -> WorkerInfo:
        await self._wait_for_hives(narrator)
        self._check_region(ref, hints.job)
        # Off the event loop: a first estimate reads the GGUF header (and imports gguf).
        req = await asyncio.to_thread(self.place_request, ref, hints)
        worker_id = f"wrk-{uuid.uuid4().hex[:8]}"
        reservations = self._registry.reservations
        waited = False  # for suspected hives to report again, once
        while True:  # decide, then do
            plan, decision, need = await self._decide_and_reserve(ref, req, worker_id,
                                                                  hints.job, waited)
            report = plan.report
            for note in report.notes:
                narrator.narrate("place", note)
            if report.refusal is not None:  # the script said no: final, with its reason
                raise report.refusal
            if decision is None:
                if not waited and self._registry.suspects():
                    waited = True
                    await self._await_suspects(narrator)
                    continue
                raise _no_room(ref, req.need, report, self.regions_for(hints.job))
            if plan.eviction is not None and plan.placement is None:
                try:
                    await self._evict(plan.eviction, ref, narrator)
                except BaseException:
                    reservations.release(worker_id)
                    self._registry.set_evicting(plan.eviction.workers, False)
                    raise
            break
        narrator.narrate("place", f"placing {ref.name} on {decision.hive_id} {decision.device}"
                         f" (reserving {_gib(need)}; {report.policy})")
        spec = SpawnWorker(model=ref.name, device=decision.device,
                           engine=_engine_for(ref, engine),
                           threads=hints.threads or self._threads, worker_id=worker_id,
                           slots=hints.slots)
        try:
            info = await self._hives.spawn(decision.hive_id,
                                           self._registry.hive_url(decision.hive_id), spec)
        except BaseException:
            reservations.release(worker_id)
            raise
        self._asked(info.id, asyncio.get_running_loop().time())
        self._registry.upsert_worker(info)
        if hints.keep_warm or ref.name in self._keep_warm_models:
            self._registry.keep_warm(info.id)
        narrator.narrate("worker_spawn", f"worker {info.id} starting", actor="hive")
        return info

    async def _decide_and_reserve(self, ref: ModelRef, req: PlaceRequest, worker_id: str,
                                  job: JobFacts | None, waited: bool
                                  ) -> tuple[PlacementPlan, Placement | None, int]:
        """A placement plan and, in the same step, the memory it needs reserved for
        `worker_id`: a concurrent placement sees that memory as taken. A script decides on its
        own thread (an await), so placements take turns here. Evict-then-place reserves the room
        now and takes the victims out of every other plan before they stop: their STOPPING
        report frees their own reservations, and no other placement may take that memory
        meanwhile. While a hive is suspected (it may be alive) nothing is evicted, unless the
        caller `waited` for it already. Returns where, and the bytes reserved."""
        async with self._placing:
            started = time.perf_counter()
            snapshot = self._within(self._registry.snapshot(), self.regions_for(job))
            plan = await decide_placement(self.policy, snapshot, req, job)
            if self._observer is not None:
                self._observer.decided("place", time.perf_counter() - started)
            if plan.placement is not None:
                target = plan.placement
            elif plan.eviction is not None and (waited or not self._registry.suspects()):
                target = plan.eviction.placement
                self._registry.set_evicting(plan.eviction.workers)
            else:
                return plan, None, 0
            need = req.need_on(_kind(target.device))
            self._registry.reservations.reserve(worker_id, target.hive_id, target.device,
                                                ref.name, need)
            return plan, target, need

    async def _evict(self, eviction: Eviction, ref: ModelRef, narrator: Narrator) -> None:
        narrator.narrate("evict", f"stopping idle {', '.join(eviction.workers)} to free "
                         f"{_gib(eviction.frees)} on {eviction.placement.key} for {ref.name}")
        for worker_id in eviction.workers:
            await self.stop(worker_id)
            self.evictions += 1

    async def wait_ready(self, info: WorkerInfo, narrator: Narrator) -> WorkerInfo:
        if self._tracing is None:
            return await self._wait_ready(info, narrator)
        with self._tracing.step("rbee.worker_start", {"rbee.worker.id": info.id,
                                                      "rbee.hive.id": info.hive_id}):
            return await self._wait_ready(info, narrator)

    async def _wait_ready(self, info: WorkerInfo, narrator: Narrator) -> WorkerInfo:
        """Until the worker is ready. Its hive pushes telemetry at once on every state change,
        so this waits on the registry; the hive is asked directly at first (the worker may be
        ready already) and whenever nothing arrived for `ask_every` (load progress, which is
        not pushed, or a lost report)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._spawn_timeout
        url = self._registry.hive_url(info.hive_id)
        last_stage = ""
        ask = True
        while True:
            if ask:
                self._registry.upsert_worker(
                    await self._hives.get_worker(info.hive_id, url, info.id))
            info = self._registry.find_worker(info.id) or info
            if info.stage != last_stage:
                last_stage = info.stage
                narrator.progress(info.stage, info.progress)
            if info.state is WorkerState.READY:
                narrator.narrate("worker_ready", f"worker {info.id} ready", actor="worker")
                self._ready(info, loop.time())
                return info
            if info.state not in _STARTING:
                self._spawned_at.pop(info.id, None)
                raise _start_failure(info)
            left = deadline - loop.time()
            if left <= 0:
                self._spawned_at.pop(info.id, None)
                err = NoCapacity(f"worker {info.id} not ready after {self._spawn_timeout:.0f}s")
                err.retry_after = 5.0
                raise err
            ask = not await self._registry.wait_change(min(left, self._ask_every))

    def _asked(self, worker_id: str, now: float) -> None:
        """Remember when a worker was asked for, for its load time. A worker that never became
        ready with nobody waiting (its hive vanished, its waiter was cancelled) leaves an
        entry behind: those past any start's deadline are dropped, so the map stays small."""
        stale = now - 2 * self._spawn_timeout
        for old in [w for w, at in self._spawned_at.items() if at < stale]:
            del self._spawned_at[old]
        self._spawned_at[worker_id] = now

    def _ready(self, info: WorkerInfo, now: float) -> None:
        """A worker we asked for is ready: its load time, once (other waiters find none)."""
        asked = self._spawned_at.pop(info.id, None)
        if asked is not None and self._observer is not None:
            self._observer.loaded(info.model, now - asked)

    async def stop(self, worker_id: str) -> WorkerInfo:
        info = self._registry.find_worker(worker_id)
        if info is None:
            raise WorkerNotFound(f"no worker {worker_id!r}", param="worker_id")
        stopped = await self._hives.stop_worker(info.hive_id,
                                                self._registry.hive_url(info.hive_id), worker_id)
        self._registry.drop_worker(info.hive_id, worker_id)
        self._spawned_at.pop(worker_id, None)
        return stopped


def _unused(lock: asyncio.Lock) -> bool:
    """Neither held nor waited for. A released lock with waiters is not taken again until
    the next waiter runs: dropping it then would let a new request make a second lock, and
    two first requests for one model would each place a worker."""
    return not lock.locked() and not getattr(lock, "_waiters", None)


def _kind(device: str) -> str:
    return device.split(":", 1)[0]


def _engine_for(ref: ModelRef, engine: str | None) -> str | None:
    """The engine a spawn names: the one asked for, or (the hive parsing the model's name
    alone would take a video pipeline for an image model) the video engine."""
    if engine is None and ref.engine == DIFFUSERS_VIDEO:
        return ref.engine
    return engine


def _no_room(ref: ModelRef, need: int, report: Report,
             regions: frozenset[str] | None) -> NoCapacity:
    where = "no hive" if regions is None else f"no hive in {', '.join(sorted(regions))}"
    kind = NoCapacity if regions is None else NoRegionCapacity
    err = kind(f"{where} can host {ref.name} (needs {_gib(need)}): {report.explain()}")
    err.retry_after = 10.0
    return err


def _start_failure(info: WorkerInfo) -> Exception:
    message = f"worker {info.id} {info.state.value}: {info.error or 'unknown error'}"
    if info.error_code == ModelNotFound.code:
        return ModelNotFound(message, param="model")
    if info.error_code:
        return from_envelope(500, {"error": {"message": message, "code": info.error_code}})
    if info.state is WorkerState.CRASHED:
        return EngineError(message)
    return UpstreamError(message)
