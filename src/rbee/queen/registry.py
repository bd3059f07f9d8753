"""The queen's live view of hives and workers, fed by hive telemetry."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain

from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
from rbee.core.clock import Clock
from rbee.core.errors import HiveNotFound
from rbee.core.states import WorkerState
from rbee.queen.reservations import Reservations
from rbee.scheduler.snapshot import (
    ClusterSnapshot,
    DeviceRow,
    HiveView,
    WorkerView,
    device_key,
    hive_device_rows,
)

MISSED_INTERVALS_DOWN = 3


RATE_WEIGHT = 0.3  # how much a stream's rate moves a worker's average (the last few count)


@dataclass
class HiveRecord:
    telemetry: HiveTelemetry
    last_seen: float
    workers: dict[str, WorkerInfo] = field(default_factory=dict)
    suspect: bool = False  # a worker there was unreachable: down until the next report
    # What routing snapshots reuse until something of this hive changes: every request takes
    # a snapshot, and building a view per worker each time cost 0.6 ms at 1,000 workers.
    view: HiveView | None = None
    routing_views: tuple[WorkerView, ...] | None = None
    device_counts: dict[str, int] = field(default_factory=dict)  # with routing_views
    by_model: dict[str, tuple[WorkerView, ...]] = field(default_factory=dict)  # likewise
    # Placement's rows of this hive's devices, and what they were computed from (the view,
    # the reservation totals, the worker counts): recomputed only when one of them changed.
    device_rows: tuple[DeviceRow, ...] = ()
    rows_view: HiveView | None = None
    rows_totals: tuple[dict[str, int], dict[str, int]] | None = None
    rows_counts: dict[str, int] | None = None


class Registry:
    def __init__(self, clock: Clock, telemetry_interval: float, *,
                 memory_budget: int | None = None, unconfirmed_ttl: float = 120.0) -> None:
        self._clock = clock
        self._interval = telemetry_interval
        self._hives: dict[str, HiveRecord] = {}
        self._inflight: dict[str, int] = {}
        self._rates: dict[str, float] = {}  # a worker's recent streams, frames a second
        self._idle_since: dict[str, float] = {}  # worker → when its last request ended
        self._keep_warm: set[str] = set()  # worker ids never unloaded for idleness/eviction
        self._hive_of: dict[str, str] = {}  # worker → hive, to refresh one hive's views
        self._unresponsive: set[str] = set()  # workers liveness took out of routing
        # Workers being stopped to make room: routed to no more, in no other eviction plan.
        self._evicting: set[str] = set()
        # Set, then replaced, on every change: a waiter sees the next change after it looked.
        self._change = asyncio.Event()
        self.changes = 0  # how many changes were announced (wait_change's `since`)
        self.budget = memory_budget
        self.reservations = Reservations(clock, unconfirmed_ttl)

    def report(self, t: HiveTelemetry) -> None:
        old = self._hives.get(t.hive_id)
        record = self._hives[t.hive_id] = HiveRecord(t, self._clock.monotonic(),
                                                     {w.id: w for w in t.workers})
        if old is not None:
            for worker_id in old.workers.keys() - record.workers.keys():
                # Gone from its hive (stopped, or crashed and forgotten): so is what we kept
                # about it, or a queen up for months keeps every worker it ever saw. A worker
                # we recorded at spawn that this report predates keeps its keep-warm mark.
                self._forget_worker(worker_id, keep_warm=old.workers[worker_id].state
                                    in (WorkerState.STARTING, WorkerState.LOADING))
        self._hive_of.update(dict.fromkeys(record.workers, t.hive_id))
        self.reservations.sync_hive(t.hive_id, t.workers)
        # Build the hive's views now, off the request path: a report is its own event, and
        # the next request's snapshot then only rebuilds hives whose workers changed since.
        self._hive_view(t.hive_id, record, record.last_seen)
        self._routing_views(record, self._inflight, self._skipped())
        self._notify()

    def upsert_worker(self, info: WorkerInfo) -> None:
        """Record what a hive just told us directly, ahead of its next telemetry."""
        record = self._hives.get(info.hive_id)
        if record is not None:
            record.workers[info.id] = info
            record.routing_views = None
            self._hive_of[info.id] = info.hive_id
        self.reservations.observe(info)
        self._notify()

    def drop_worker(self, hive_id: str, worker_id: str) -> None:
        record = self._hives.get(hive_id)
        if record is not None:
            record.workers.pop(worker_id, None)
            record.routing_views = None
        self._forget_worker(worker_id)
        self.reservations.release(worker_id)

    def _forget_worker(self, worker_id: str, keep_warm: bool = False) -> None:
        """Everything kept per worker, but its requests in flight (their ends release them)."""
        self._hive_of.pop(worker_id, None)
        self._rates.pop(worker_id, None)
        self._unresponsive.discard(worker_id)
        self._evicting.discard(worker_id)
        self._idle_since.pop(worker_id, None)
        if not keep_warm:
            self._keep_warm.discard(worker_id)

    def set_unresponsive(self, worker_id: str, on: bool = True) -> None:
        """A worker that stopped answering probes (queen.liveness) is routed to no more,
        whatever its hive reports, until it answers again."""
        if on:
            self._unresponsive.add(worker_id)
        else:
            self._unresponsive.discard(worker_id)
        self._changed(worker_id)

    def unresponsive(self) -> frozenset[str]:
        return frozenset(self._unresponsive)

    def set_evicting(self, worker_ids: Iterable[str], on: bool = True) -> None:
        """Workers an eviction plan is stopping: out of routing and of every other plan
        (their memory is already promised to the worker they make room for)."""
        for worker_id in worker_ids:
            if on:
                self._evicting.add(worker_id)
            else:
                self._evicting.discard(worker_id)
            self._changed(worker_id)

    def _skipped(self) -> set[str]:
        """Workers routing leaves out; the common case (none) builds no set."""
        if not self._evicting:
            return self._unresponsive
        return self._unresponsive | self._evicting

    def _notify(self) -> None:
        self.changes += 1
        self._change.set()
        self._change = asyncio.Event()

    async def wait_change(self, timeout: float, since: int | None = None) -> bool:
        """Until a hive reports or a worker is recorded (True), or `timeout` passes (False):
        readiness and registration are pushed by telemetry, so nothing polls. `since`: the
        `changes` count the caller last saw; a change after it returns at once (one that
        came while the caller was busy is not missed)."""
        if since is not None and since != self.changes:
            return True
        try:
            await asyncio.wait_for(self._change.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def keep_warm(self, worker_id: str, on: bool = True) -> None:
        if on:
            self._keep_warm.add(worker_id)
        else:
            self._keep_warm.discard(worker_id)

    def is_kept_warm(self, worker_id: str) -> bool:
        return worker_id in self._keep_warm

    def suspect(self, hive_id: str) -> None:
        """One of its workers could not be reached: treat the hive as down until it reports
        again (at once if it is alive, since a lost worker is a change it reports)."""
        record = self._hives.get(hive_id)
        if record is not None and not record.suspect:
            record.suspect = True
            self._notify()  # a hive going down is news (the dashboard pushes it at once)

    def forget(self, hive_id: str) -> None:
        """A hive we stopped or removed: no longer listed, routed to or waited for."""
        record = self._hives.pop(hive_id, None)
        if record is not None:
            for worker_id in record.workers:
                self._inflight.pop(worker_id, None)
                self._forget_worker(worker_id)
        self.reservations.forget_hive(hive_id)

    def set_devices(self, hive_id: str, devices: list[Device]) -> None:
        record = self._hives.get(hive_id)
        if record is not None:
            record.telemetry = record.telemetry.model_copy(update={"devices": devices})
            record.view = None

    def state(self, hive_id: str) -> str:
        """"up", "down" (silent for 3 intervals) or "absent" (never registered, or forgotten)."""
        if hive_id not in self._hives:
            return "absent"
        return "up" if self.is_up(hive_id) else "down"

    def telemetry(self, hive_id: str) -> HiveTelemetry | None:
        record = self._hives.get(hive_id)
        return record.telemetry if record else None

    def region(self, hive_id: str) -> str | None:
        """The region a hive reported (hives.conf `Region`), if any."""
        found = self.telemetry(hive_id)
        return found.region if found else None

    def seen_ago(self, hive_id: str) -> float | None:
        record = self._hives.get(hive_id)
        return self._clock.monotonic() - record.last_seen if record else None

    def is_up(self, hive_id: str) -> bool:
        record = self._hives.get(hive_id)
        return record is not None and self._up(record, self._clock.monotonic())

    def _up(self, record: HiveRecord, now: float) -> bool:
        return not record.suspect and not self._silent(record, now)

    def silent(self, hive_id: str) -> bool:
        """Missed 3 telemetry intervals (down for sure, not merely suspected)."""
        record = self._hives.get(hive_id)
        return record is not None and self._silent(record, self._clock.monotonic())

    def _silent(self, record: HiveRecord, now: float) -> bool:
        return now - record.last_seen > MISSED_INTERVALS_DOWN * self._interval

    def suspects(self) -> list[str]:
        """Hives down only because a worker there failed: alive, they report within one
        interval (a lost worker is a change they report at once)."""
        now = self._clock.monotonic()
        return sorted(h for h, r in self._hives.items() if r.suspect and not self._silent(r, now))

    @property
    def down_after(self) -> float:
        """Seconds without a report after which a hive is down for sure."""
        return MISSED_INTERVALS_DOWN * self._interval

    def hive_url(self, hive_id: str) -> str:
        record = self._hives.get(hive_id)
        if record is None:
            raise HiveNotFound(f"no hive {hive_id!r} has registered", param="hive_id")
        return record.telemetry.url

    def hive_region(self, hive_id: str) -> str | None:
        """The region a hive reported (None: unknown hive, or none set)."""
        record = self._hives.get(hive_id)
        return record.telemetry.region if record is not None else None

    def hive_ids(self) -> list[str]:
        return sorted(self._hives)

    def hives_up(self) -> list[str]:
        now = self._clock.monotonic()
        return sorted(h for h, r in self._hives.items() if self._up(r, now))

    def workers(self) -> list[WorkerInfo]:
        """Workers as their hives last reported them (decisions read this with `is_up`)."""
        return [w for r in self._hives.values() for w in r.workers.values()]

    def listed_workers(self) -> list[WorkerInfo]:
        """Workers as people and API clients should see them: a worker of a hive that is down
        is listed `unknown` (its last report in `stage`), never `ready`, since nothing has
        been heard of it since. It stays listed: the hive may come back with it. Likewise a
        worker that stopped answering probes (liveness), whatever its hive says."""
        now = self._clock.monotonic()
        listed: list[WorkerInfo] = []
        for hive_id, r in self._hives.items():
            if self._up(r, now):
                listed.extend(w if w.id not in self._unresponsive else w.model_copy(update={
                    "state": WorkerState.UNKNOWN,
                    "stage": f"answers no probe; last reported {w.state.value}"})
                    for w in r.workers.values())
                continue
            for w in r.workers.values():
                stage = f"hive {hive_id} is down; last reported {w.state.value}"
                listed.append(w.model_copy(update={"state": WorkerState.UNKNOWN,
                                                   "stage": stage}))
        return listed

    def find_worker(self, worker_id: str) -> WorkerInfo | None:
        """One worker by id, through the worker → hive index (no scan of every hive)."""
        record = self._hives.get(self._hive_of.get(worker_id, ""))
        return record.workers.get(worker_id) if record is not None else None

    def acquire(self, worker_id: str) -> None:
        self._inflight[worker_id] = self._inflight.get(worker_id, 0) + 1
        self._changed(worker_id)

    def release(self, worker_id: str) -> None:
        self._changed(worker_id)
        left = self._inflight.get(worker_id, 0) - 1
        if left > 0:
            self._inflight[worker_id] = left
        else:
            self._inflight.pop(worker_id, None)
            if worker_id in self._hive_of:  # a stream that outlived its worker: nothing idles
                self._idle_since[worker_id] = self._clock.monotonic()

    def _changed(self, worker_id: str) -> None:
        record = self._hives.get(self._hive_of.get(worker_id, ""))
        if record is not None:
            record.routing_views = None

    def ready_count(self, model: str) -> int:
        """Ready workers serving `model` on hives that are up (admission capacity)."""
        return sum(1 for r in self._hives.values() for w in r.workers.values()
                   if w.model == model and w.state is WorkerState.READY
                   and self.is_up(w.hive_id) and w.id not in self._unresponsive)

    def ready_slots(self, model: str) -> int:
        """Requests the ready workers serving `model` take at once, each as many as it
        advertised (admission capacity); hives down and unresponsive workers count none."""
        return sum(w.slots for r in self._hives.values() for w in r.workers.values()
                   if w.model == model and w.state is WorkerState.READY
                   and self.is_up(w.hive_id) and w.id not in self._unresponsive)

    def serves(self, model: str) -> bool:
        """Whether any worker, in any state, is listed for `model`."""
        return any(w.model == model for r in self._hives.values() for w in r.workers.values())

    def inflight(self, worker_id: str) -> int:
        return self._inflight.get(worker_id, 0)

    def observed_rate(self, worker_id: str, frames_per_second: float) -> None:
        """A stream from `worker_id` ended at this rate (data frames a second: a chat
        stream's tokens); kept as a moving average for the dashboard."""
        if worker_id not in self._hive_of:
            return  # dropped meanwhile: nothing to show it on
        old = self._rates.get(worker_id)
        self._rates[worker_id] = frames_per_second if old is None \
            else old + RATE_WEIGHT * (frames_per_second - old)

    def tokens_per_second(self, worker_id: str) -> float | None:
        return self._rates.get(worker_id)

    def _hive_view(self, hive_id: str, r: HiveRecord, now: float) -> HiveView:
        up = self._up(r, now)
        view = r.view
        if view is None or view.up != up:
            t = r.telemetry
            view = r.view = HiveView(id=hive_id, url=t.url, up=up, devices=tuple(t.devices),
                                     region=t.region, labels=t.labels)
        return view

    @staticmethod
    def _routing_views(r: HiveRecord, inflight: dict[str, int],
                       skip: set[str]) -> tuple[WorkerView, ...]:
        if r.routing_views is None:
            r.routing_views = tuple(WorkerView(w, inflight.get(w.id, 0))
                                    for w in r.workers.values() if w.id not in skip)
            on_device = Counter([w.device for w in r.workers.values()])
            r.device_counts = {device_key(r.telemetry.hive_id, d): n
                               for d, n in on_device.items()}
            by_model: dict[str, list[WorkerView]] = {}
            for view in r.routing_views:
                by_model.setdefault(view.info.model, []).append(view)
            r.by_model = {model: tuple(views) for model, views in by_model.items()}
        return r.routing_views

    def _device_rows(self, r: HiveRecord, hive: HiveView, counts: dict[str, int],
                     totals: tuple[dict[str, int], dict[str, int]]) -> tuple[DeviceRow, ...]:
        if r.rows_view is not hive or r.rows_totals is not totals or r.rows_counts is not counts:
            r.device_rows = hive_device_rows(hive, counts, *totals, self.budget)
            r.rows_view, r.rows_totals, r.rows_counts = hive, totals, counts
        return r.device_rows

    def idle_for(self, info: WorkerInfo, now: float | None = None) -> float:
        """Seconds since the worker last finished a request (or was first seen ready)."""
        if self._inflight.get(info.id):
            return 0.0
        if now is None:
            now = self._clock.monotonic()
        since = self._idle_since.get(info.id)
        if since is None:
            if info.state is not WorkerState.READY:
                return 0.0
            since = self._idle_since[info.id] = now
        return now - since

    def snapshot(self, *, memory: bool = True, eviction: bool = True) -> ClusterSnapshot:
        """The frozen view decisions use.

        `memory=False` leaves out reservations (built-in routing, on every request, reads
        none); `eviction=False` leaves out each worker's reservation, idle time and keep-warm
        flag, which only eviction reads. Without them, the worker views are each hive's cached
        ones, rebuilt only when something of that hive changed.
        """
        now = self._clock.monotonic()  # one reading for every hive's state and idle time
        records = sorted(self._hives.items())
        inflight = self._inflight
        skipped = self._skipped()
        silent_after = MISSED_INTERVALS_DOWN * self._interval
        views: list[HiveView] = []
        cached: list[tuple[WorkerView, ...]] = []
        for hive_id, record in records:  # one pass, on every request: mostly cache hits
            view = record.view  # `_hive_view`, inlined where it changes nothing
            if view is None or view.up is not (not record.suspect
                                               and now - record.last_seen <= silent_after):
                view = self._hive_view(hive_id, record, now)
            views.append(view)
            routing = record.routing_views
            cached.append(self._routing_views(record, inflight, skipped)
                          if routing is None else routing)
        hives = tuple(views)
        models = tuple([record.by_model for _, record in records])
        if not memory:
            return ClusterSnapshot(hives, tuple(chain.from_iterable(cached)), models=models)
        res, warm = self.reservations, self._keep_warm | self._evicting  # neither evictable
        if eviction:
            workers = tuple(
                WorkerView(w, inflight.get(w.id, 0), r.bytes if (r := res.get(w.id)) else 0,
                           self.idle_for(w, now), w.id in warm)
                for w in self.workers())
        else:
            workers = tuple(chain.from_iterable(cached))
        totals = res.totals()
        # What the device rows are made of, as of now (a snapshot is frozen): computed, or
        # taken from the hive's record, only if a placement asks for them.
        sources = [(record, hive, record.device_counts)
                   for hive, (_, record) in zip(hives, records, strict=True)]
        return ClusterSnapshot(
            hives=hives, workers=workers, reserved=totals[0], pending=totals[1],
            budget=self.budget, models=None if eviction else models,
            device_rows=lambda: tuple(chain.from_iterable(
                [self._device_rows(*source, totals) for source in sources])))
