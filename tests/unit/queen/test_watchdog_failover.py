"""Down hives: the watchdog re-places their models, and requests fail over to other workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import httpx
import pytest

from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.errors import (
    EngineError,
    InvalidRequest,
    NoCapacity,
    RbeeError,
    UpstreamError,
    WorkerNotReady,
    WorkerUnavailable,
    WorkerUnreachable,
)
from rbee.core.states import WorkerState
from rbee.models.catalog import ModelRef, parse_ref
from rbee.queen.credentials import Credentials
from rbee.queen.dispatch import Dispatcher, Hints, Narrator
from rbee.queen.failover import ATTEMPTS, with_failover
from rbee.queen.hive_client import HiveClient
from rbee.queen.registry import Registry
from rbee.queen.watchdog import Watchdog

INTERVAL = 2.0
CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=8 << 30, memory_free=8 << 30)
A, B, C = "file:/models/a.gguf", "file:/models/b.gguf", "file:/models/c.gguf"


def worker(wid: str, hive: str, model: str, state: WorkerState = WorkerState.READY) -> WorkerInfo:
    return WorkerInfo(id=wid, hive_id=hive, model=model, model_path=model[5:], device="cpu",
                      engine="llama_cpp", url=f"http://{hive}/{wid}", state=state)


def report(registry: Registry, hive: str, *workers: WorkerInfo) -> None:
    registry.report(HiveTelemetry(hive_id=hive, url=f"http://{hive}", version="0", pid=1,
                                  devices=[CPU], workers=list(workers)))


class Events:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def narrate(self, action: str, message: str, actor: str = "queen") -> None:
        self.events.append((action, message))

    def progress(self, stage: str, fraction: float) -> None:
        return None


# -- watchdog -----------------------------------------------------------------------------


class FakeDispatcher:
    """Records what it was asked to place; answers with a new worker on `h2`, or fails."""

    def __init__(self, error: RbeeError | None = None) -> None:
        self.asked: list[str] = []
        self.error = error

    async def worker_for(self, ref: ModelRef, hints: Hints, narrator: Narrator) -> WorkerInfo:
        self.asked.append(ref.name)
        if self.error is not None:
            raise self.error
        return worker(f"new-{len(self.asked)}", "h2", ref.name)


H1_WORKERS = (
    worker("h1-a", "h1", A),  # served only here: orphaned
    worker("h1-b", "h1", B),  # also served on h2: not orphaned
    worker("h1-c", "h1", C, WorkerState.LOADING),  # still loading here only: orphaned
    worker("h1-x", "h1", "rbee-fake", WorkerState.CRASHED),  # not serving: not orphaned
    worker("h1-y", "h1", "smollm2-135m-instruct", WorkerState.STOPPING),
)


Watched = tuple[Registry, FakeClock, FakeDispatcher, Watchdog]


@pytest.fixture
async def watched() -> AsyncIterator[Watched]:
    clock = FakeClock()
    registry = Registry(clock, INTERVAL)
    dispatcher = FakeDispatcher()
    watchdog = Watchdog(registry, cast(Dispatcher, dispatcher), INTERVAL)
    report(registry, "h1", *H1_WORKERS)
    report(registry, "h2", worker("h2-b", "h2", B))
    yield registry, clock, dispatcher, watchdog
    await watchdog.stop()


def silence(registry: Registry, clock: FakeClock, quiet: str, seconds: float = 6.1) -> None:
    """Advance past 3 intervals with every hive but `quiet` reporting again."""
    clock.advance(seconds)
    for hive in registry.hive_ids():
        if hive != quiet:
            report(registry, hive, *[w for w in registry.workers() if w.hive_id == hive])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_newly_down_reports_each_transition_once(watched: Watched) -> None:
    registry, clock, _, watchdog = watched
    assert watchdog.newly_down() == []
    silence(registry, clock, "h1", seconds=6.0)  # exactly 3 intervals: still up
    assert watchdog.newly_down() == []
    silence(registry, clock, "h1", seconds=0.1)
    assert watchdog.newly_down() == ["h1"]
    assert watchdog.newly_down() == []  # still down, not new
    report(registry, "h1")
    assert watchdog.newly_down() == []  # back
    silence(registry, clock, "h1")
    assert watchdog.newly_down() == ["h1"]  # down again: a new transition


async def test_a_suspected_hive_is_skipped_but_not_re_placed(watched: Watched) -> None:
    """Suspicion (one unreachable worker) stops routing at once; only silence re-places."""
    registry, _, _, watchdog = watched
    registry.suspect("h2")
    assert not registry.is_up("h2") and registry.state("h2") == "down"
    assert watchdog.newly_down() == []
    report(registry, "h2")
    assert registry.is_up("h2")  # its next report clears the suspicion


async def test_orphaned_models_are_those_no_live_hive_serves(watched: Watched) -> None:
    registry, clock, _, watchdog = watched
    silence(registry, clock, "h1")
    assert watchdog.orphaned_models("h1") == [A, C]
    # a model loading on a live hive is served there
    report(registry, "h2", worker("h2-b", "h2", B), worker("h2-a", "h2", A, WorkerState.STARTING))
    assert watchdog.orphaned_models("h1") == [C]
    assert watchdog.orphaned_models("h2") == []  # up: everything it serves is alive
    assert watchdog.orphaned_models("nope") == []


async def test_tick_replaces_orphaned_models_once_per_down_transition(watched: Watched) -> None:
    registry, clock, dispatcher, watchdog = watched
    watchdog.tick()
    await settle()
    assert dispatcher.asked == []  # all up

    silence(registry, clock, "h1")
    watchdog.tick()
    await settle()
    assert sorted(dispatcher.asked) == [A, C]
    assert sorted(watchdog.replaced) == [("h1", A), ("h1", C)]

    watchdog.tick()
    silence(registry, clock, "h1", seconds=1.0)
    watchdog.tick()
    await settle()
    assert len(dispatcher.asked) == 2  # still the same down period

    report(registry, "h1", *H1_WORKERS)  # back with its workers
    watchdog.tick()
    silence(registry, clock, "h1")
    watchdog.tick()
    await settle()
    assert sorted(dispatcher.asked) == [A, A, C, C]


async def test_a_model_that_cannot_be_replaced_is_logged_not_raised(watched: Watched) -> None:
    registry, clock, dispatcher, watchdog = watched
    dispatcher.error = NoCapacity("no hive can host it")
    silence(registry, clock, "h1")
    watchdog.tick()
    await settle()
    assert sorted(dispatcher.asked) == [A, C] and not watchdog.replaced


async def test_stop_cancels_replacements_in_flight() -> None:
    clock = FakeClock()
    registry = Registry(clock, INTERVAL)
    started = asyncio.Event()

    class Hanging(FakeDispatcher):
        async def worker_for(self, ref: ModelRef, hints: Hints,
                             narrator: Narrator) -> WorkerInfo:
            started.set()
            await asyncio.Event().wait()
            raise AssertionError("never")

    watchdog = Watchdog(registry, cast(Dispatcher, Hanging()), INTERVAL)
    report(registry, "h1", worker("w", "h1", A))
    silence(registry, clock, "h1")
    watchdog.tick()
    await asyncio.wait_for(started.wait(), 1)
    await asyncio.wait_for(watchdog.stop(), 1)
    assert not watchdog.replaced


# -- failover -----------------------------------------------------------------------------


Cluster = tuple[Registry, Dispatcher, list[httpx.Request]]


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    """Four hives with one ready worker each for model A, and a real dispatcher whose
    hive API answers 503: a test that makes it place a worker fails loudly."""
    clock = FakeClock()
    registry = Registry(clock, INTERVAL)
    for n in range(1, 5):
        report(registry, f"h{n}", worker(f"w{n}", f"h{n}", A))
    requests: list[httpx.Request] = []

    def hive_api(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(503, json={"error": {"message": "no", "code": "x"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(hive_api)) as http:
        dispatcher = Dispatcher(registry, HiveClient(http, Credentials()), spawn_timeout=1.0,
                                default_threads=None, hive_wait=0.0)
        yield registry, dispatcher, requests


Attempt = Callable[[WorkerInfo], Awaitable[str]]


def failing(tried: list[str], errors: dict[str, RbeeError]) -> Attempt:
    async def attempt(w: WorkerInfo) -> str:
        tried.append(w.id)
        if w.id in errors:
            raise errors[w.id]
        return f"answer from {w.id}"

    return attempt


async def test_an_unreachable_worker_is_dropped_and_the_next_one_used(cluster: Cluster) -> None:
    registry, dispatcher, requests = cluster
    tried: list[str] = []
    events = Events()
    result = await with_failover(dispatcher, registry, parse_ref(A), Hints(), events,
                                 failing(tried, {"w1": WorkerUnreachable("connect refused")}))
    assert result == "answer from w2" and tried == ["w1", "w2"]
    assert registry.find_worker("w1") is None
    assert registry.state("h1") == "down"  # suspected until it reports again
    assert registry.state("h2") == "up" and registry.find_worker("w2") is not None
    assert events.events == [("retry", "w1 unreachable; retrying on another worker")]
    assert requests == []
    report(registry, "h1", worker("w1", "h1", A))
    assert registry.state("h1") == "up"


async def test_a_worker_that_is_not_ready_is_skipped_and_its_hive_stays_up(
        cluster: Cluster) -> None:
    """It answered (503 before any header): its hive is fine, only it is skipped."""
    registry, dispatcher, _ = cluster
    tried: list[str] = []
    result = await with_failover(dispatcher, registry, parse_ref(A), Hints(), Events(),
                                 failing(tried, {"w1": WorkerNotReady("w1 is loading")}))
    assert result == "answer from w2" and tried == ["w1", "w2"]
    assert registry.find_worker("w1") is None  # until h1's next report says what it is
    assert registry.state("h1") == "up"


async def test_the_error_propagates_after_three_unreachable_workers(cluster: Cluster) -> None:
    registry, dispatcher, requests = cluster
    tried: list[str] = []
    errors: dict[str, RbeeError] = {f"w{n}": WorkerUnreachable(f"w{n} gone") for n in range(1, 5)}
    with pytest.raises(WorkerUnreachable, match="w3 gone"):
        await with_failover(dispatcher, registry, parse_ref(A), Hints(), Events(),
                            failing(tried, errors))
    assert ATTEMPTS == 3 and tried == ["w1", "w2", "w3"]
    assert [registry.state(f"h{n}") for n in range(1, 5)] == ["down", "down", "down", "up"]
    assert requests == []


@pytest.mark.parametrize("error", [
    UpstreamError("worker answered 502"),
    WorkerUnavailable("worker is busy"),
    InvalidRequest("bad request"),
    EngineError("engine crashed"),
])
async def test_other_errors_are_not_retried(cluster: Cluster, error: RbeeError) -> None:
    registry, dispatcher, _ = cluster
    tried: list[str] = []
    with pytest.raises(type(error)) as info:
        await with_failover(dispatcher, registry, parse_ref(A), Hints(), Events(),
                            failing(tried, {"w1": error}))
    assert info.value is error and tried == ["w1"]
    assert registry.find_worker("w1") is not None and registry.state("h1") == "up"


async def test_a_pinned_worker_is_not_retried(cluster: Cluster) -> None:
    registry, dispatcher, requests = cluster
    tried: list[str] = []
    with pytest.raises(WorkerUnreachable):
        await with_failover(dispatcher, registry, parse_ref(A), Hints(worker_id="w3"), Events(),
                            failing(tried, {"w3": WorkerUnreachable("gone")}))
    assert tried == ["w3"]
    assert registry.find_worker("w3") is None and registry.state("h3") == "down"
    assert requests == []
