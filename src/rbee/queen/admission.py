"""Admission: a bounded queue per model, interactive before batch, 429 when full.

Each ready worker takes as many requests at a time as it advertises (`WorkerInfo.slots`: a
llama.cpp worker generates one answer at a time, a batching engine more), so a model admits
the sum over its ready workers. Requests beyond that wait here, in priority order
(interactive, then batch; first come first served within a priority), and see their
position on the job stream.
When a model's queue is full the request is refused at once with 429 and a Retry-After
estimated from recent service times — never left to time out.

Fair share: within a priority, tenants take turns (round robin over each tenant's own
first-come-first-served queue), so a tenant with 200 requests queued delays another tenant's
request by at most one request per other waiting tenant, not by 200.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rbee.core.clock import Clock
from rbee.core.errors import QueueFull
from rbee.models.catalog import public_model

if TYPE_CHECKING:
    from rbee.tracing.tracer import Tracing

PRIORITIES = {"interactive": 0, "batch": 1}
Position = Callable[[int, int], None]  # (position, queue length) for the narration
Waited = Callable[[str, float], None]  # (model, seconds queued) of each admitted request


@dataclass(eq=False)
class _Waiter:
    rank: int
    seq: int
    future: asyncio.Future[None]
    on_position: Position | None = None
    told: int = 0  # the last position announced


@dataclass
class Ticket:
    """One admitted request's slot; `release` is idempotent (streams end in many ways)."""

    admission: Admission
    model: str
    started: float
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission._leave(self)


Turns = OrderedDict[str | None, deque[_Waiter]]  # tenant -> its waiters; next turn first


@dataclass
class _Lane:
    """`waiting`: per priority rank, each tenant's queue, in the order tenants take turns.
    The queues may hold abandoned waiters (their future cancelled): they are dropped when
    they surface, so leaving the queue costs O(1) and joining O(1). `held` counts every
    waiter held, `queued` the live ones; `watchers` how many of them want their position."""

    active: int = 0
    waiting: dict[int, Turns] = field(default_factory=dict)
    held: int = 0
    queued: int = 0
    watchers: int = 0
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=32))


MAX_LANES = 1024  # models with a lane, before idle lanes are dropped


class Admission:
    def __init__(self, clock: Clock, *, max_queue: int, capacity: Callable[[str], int],
                 on_admit: Waited | None = None, tracing: Tracing | None = None) -> None:
        self._clock = clock
        self._tracing = tracing  # a span per wait, under the request's (None: off)
        self._on_admit = on_admit  # the queue-wait histogram (queen.metrics), if any
        self._max_queue = max_queue
        self._capacity = capacity  # requests a model's ready workers serve at once (slots)
        self._lanes: dict[str, _Lane] = {}
        self._seq = itertools.count()

    def _limit(self, model: str) -> int:
        # A model with no ready worker yet still admits one request: it is the one that
        # places a worker (load on demand); the others queue behind it.
        return max(1, self._capacity(model))

    def queued(self, model: str) -> int:
        lane = self._lanes.get(model)
        return lane.queued if lane else 0

    def active(self, model: str) -> int:
        lane = self._lanes.get(model)
        return lane.active if lane else 0

    def lanes(self) -> list[tuple[str, int, int]]:
        """(model, requests queued, requests admitted and running) per model seen."""
        return [(model, lane.queued, lane.active) for model, lane in self._lanes.items()]

    async def enter(self, model: str, priority: str = "interactive",
                    on_position: Position | None = None, *, tenant: str | None = None
                    ) -> Ticket:
        """Wait for a slot (or raise QueueFull); release the ticket when the request ends.
        `tenant` (an id): whose turn it is in the queue (fair share); None is one more."""
        lane = self._lanes.get(model)
        if lane is None:
            lane = self._new_lane(model)
        queued_at = None
        # The limit is at least 1: an idle lane admits without counting workers (hot path).
        if lane.queued or (lane.active and lane.active >= self._limit(model)):
            queued_at = self._clock.monotonic()
            if self._tracing is None:
                await self._wait(model, lane, priority, on_position, tenant)
            else:  # a span for the time queued; a request admitted at once gets none
                with self._tracing.step("rbee.admission", {"rbee.model": public_model(model),
                                                           "rbee.priority": priority}):
                    await self._wait(model, lane, priority, on_position, tenant)
        else:
            lane.active += 1
        now = self._clock.monotonic()
        if self._on_admit is not None:
            self._on_admit(model, 0.0 if queued_at is None else now - queued_at)
        return Ticket(self, model, now)

    def _new_lane(self, model: str) -> _Lane:
        """A lane for a model seen first. Every name anyone asks for gets one (a typo, a
        made-up `hf:` ref): past MAX_LANES the idle ones are dropped, so a queen up for
        months, or a tenant inventing names, keeps a bounded map. Not on the hot path."""
        if len(self._lanes) >= MAX_LANES:
            for name in [n for n, lane in self._lanes.items()
                         if not (lane.active or lane.held)]:
                del self._lanes[name]
        lane = self._lanes[model] = _Lane()
        return lane

    def _leave(self, ticket: Ticket) -> None:
        lane = self._lanes[ticket.model]
        lane.durations.append(self._clock.monotonic() - ticket.started)
        lane.active -= 1
        self.wake(ticket.model)

    @asynccontextmanager
    async def slot(self, model: str, priority: str = "interactive",
                   on_position: Position | None = None) -> AsyncIterator[None]:
        ticket = await self.enter(model, priority, on_position)
        try:
            yield
        finally:
            ticket.release()

    async def _wait(self, model: str, lane: _Lane, priority: str,
                    on_position: Position | None, tenant: str | None) -> None:
        if lane.queued >= self._max_queue:
            raise QueueFull(f"{model}: {lane.queued} requests already queued "
                            f"(limit {self._max_queue}); retry later",
                            retry_after=self.retry_after(model))
        waiter = _Waiter(PRIORITIES.get(priority, 0), next(self._seq),
                         asyncio.get_running_loop().create_future(), on_position)
        turns = lane.waiting.get(waiter.rank)
        if turns is None:
            turns = lane.waiting[waiter.rank] = OrderedDict()
            lane.waiting = dict(sorted(lane.waiting.items()))  # ranks in order (two of them)
        queue = turns.get(tenant)
        if queue is None:
            queue = turns[tenant] = deque()  # a tenant new to the queue: its turn comes last
        queue.append(waiter)
        lane.held += 1
        lane.queued += 1
        lane.watchers += on_position is not None
        self._announce(lane)
        try:
            await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                lane.active -= 1  # admitted just as we were cancelled: give the slot back
                self.wake(model)
            else:  # gone while queued (client hung up, deadline): its place goes at once
                waiter.future.cancel()  # and its queue drops it when it surfaces
                self._left(lane, waiter)
                if lane.held > 2 * lane.queued + 64:  # mostly abandoned: compact
                    self._compact(lane)
                self._announce(lane)
            raise

    def wake(self, model: str) -> None:
        """Admit waiters while there is room (also called when a worker becomes ready)."""
        lane = self._lanes.get(model)
        if lane is None:
            return
        admitted = False
        while lane.queued and lane.active < self._limit(model):
            waiter = self._next(lane)
            if waiter is None:
                break
            self._left(lane, waiter)
            lane.active += 1
            waiter.future.set_result(None)
            admitted = True
        if admitted:
            self._announce(lane)

    @staticmethod
    def _next(lane: _Lane) -> _Waiter | None:
        """The live waiter whose turn it is (abandoned ones are dropped on the way): the most
        urgent rank, the tenant at the head of its turns; that tenant goes to the back."""
        for turns in lane.waiting.values():
            while turns:
                tenant, queue = next(iter(turns.items()))
                while queue and queue[0].future.done():
                    queue.popleft()  # abandoned: already not counted
                    lane.held -= 1
                if not queue:
                    del turns[tenant]
                    continue
                waiter = queue.popleft()
                lane.held -= 1
                if queue:
                    turns.move_to_end(tenant)
                else:
                    del turns[tenant]
                return waiter
        return None

    @staticmethod
    def _compact(lane: _Lane) -> None:
        for turns in lane.waiting.values():
            for tenant in list(turns):
                live = deque(w for w in turns[tenant] if not w.future.done())
                if live:
                    turns[tenant] = live
                else:
                    del turns[tenant]
        lane.held = lane.queued

    @staticmethod
    def _order(lane: _Lane) -> list[_Waiter]:
        """The live waiters in the order they will be admitted (tenants taking turns)."""
        order: list[_Waiter] = []
        for turns in lane.waiting.values():
            queues = [[w for w in q if not w.future.done()] for q in turns.values()]
            for round_ in itertools.zip_longest(*queues):
                order.extend(w for w in round_ if w is not None)
        return order

    @staticmethod
    def _left(lane: _Lane, waiter: _Waiter) -> None:
        lane.queued -= 1
        lane.watchers -= waiter.on_position is not None

    def wake_all(self) -> None:
        for model in list(self._lanes):
            self.wake(model)

    def retry_after(self, model: str) -> float:
        """Seconds until the queue has likely moved: its length × the mean service time."""
        lane = self._lanes.get(model)
        if lane is None or not lane.durations:
            return 1.0
        mean = sum(lane.durations) / len(lane.durations)
        return max(1.0, mean * lane.queued / self._limit(model))

    @staticmethod
    def _announce(lane: _Lane) -> None:
        """Positions to the waiters that asked for theirs (job streams). OpenAI requests ask
        for none: then this costs nothing, however long the queue."""
        if not lane.watchers:
            return
        live = Admission._order(lane)
        for position, waiter in enumerate(live, 1):
            if waiter.on_position is not None and waiter.told != position:
                waiter.told = position
                waiter.on_position(position, lane.queued)
