"""The scheduling policy in force: a built-in one, optionally steered by a user's Lua script.

Hard filters (model, hints, hive up, ready, memory) always run first, in Python; a script
only chooses among the candidates that passed them, so no script can route to a dead worker
or over-commit a device. A script that answers nil leaves the choice to the built-in policy;
one that fails (error, instruction budget, memory cap, bad answer) is counted, noted in the
decision's report (and so in the job's narration), and the built-in policy decides; after
`disable_after` failures in a row it is set aside (disabled, narrated, shown by `rbee scheduler`)
until it is applied again. One that answers `false` refuses every candidate: the request fails
with 503 and the reason (a rule such as data residency must not be "helpfully" overridden by the
fallback).

A script runs on its own thread (`queen.script_runner`), under a wall-clock limit: the
candidates and their rows are computed here, on the event loop, from the frozen snapshot; only
the script's call crosses to its thread, and its answer is applied back here. So every piece of
this object's state is touched from the event loop only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from rbee.api.cluster import Device, WorkerInfo
from rbee.core.errors import NoCapacity, PolicyRefused, RbeeError
from rbee.models.catalog import parse_ref
from rbee.queen.script_runner import WALL_SECONDS, ScriptBusy, ScriptRunner
from rbee.scheduler.placement import Placement, PlaceRequest, place
from rbee.scheduler.placement import candidates as place_candidates
from rbee.scheduler.report import Report
from rbee.scheduler.routing import RouteRequest, route
from rbee.scheduler.routing import candidates as route_candidates
from rbee.scheduler.snapshot import ClusterSnapshot, DeviceRow, HiveView, WorkerView, device_key

if TYPE_CHECKING:  # lupa loads only once a script is applied
    from rbee.scheduler.lua import Row

logger = logging.getLogger(__name__)
DISABLE_AFTER = 5  # failures in a row after which a script is set aside


class Script(Protocol):
    name: str
    has_route: bool
    has_place: bool
    last_log: list[str]  # what the last call passed to log(), shown with its decision

    def route_rows(self, job: Mapping[str, Any], rows: Sequence[Row]) -> str | None: ...

    def place_rows(self, model: Mapping[str, Any], rows: Sequence[Row]) -> str | None: ...


@dataclass(frozen=True)
class JobFacts:
    """What a script may know about the request besides the model."""

    tenant: str | None = None
    priority: str = "interactive"
    labels: dict[str, str] = field(default_factory=dict)  # the tenant's
    usage: Mapping[str, float | int | None] | None = None  # the tenant's (Quotas.usage_of)


@dataclass
class ScriptStats:
    calls: int = 0
    failures: int = 0
    fallbacks: int = 0  # nil answers: the built-in policy decided
    last_error: str | None = None
    in_a_row: int = 0  # failures since the last answer
    disabled: str | None = None  # why the script is set aside (None: it decides)
    busy: int = 0  # calls that waited the whole limit behind earlier ones (built-in decided)

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "failures": self.failures, "fallbacks": self.fallbacks,
                "last_error": self.last_error, "failures_in_a_row": self.in_a_row,
                "busy": self.busy, "disabled": self.disabled}


class SchedulingPolicy:
    def __init__(self, routing: str = "least-loaded", placement: str = "best-device", *,
                 wall_seconds: float = WALL_SECONDS, disable_after: int = DISABLE_AFTER) -> None:
        self.routing = routing
        self.placement = placement
        self.stats = ScriptStats()
        self._wall_seconds = wall_seconds
        self._disable_after = disable_after
        self._runner: ScriptRunner | None = None
        self._turn = 0
        self._last: dict[str, str] = {}  # model → the worker routed to last (ties take turns)
        self._statics = _Statics()

    @property
    def script(self) -> Script | None:
        """The script applied (even if disabled)."""
        return self._runner.script if self._runner is not None else None

    @property
    def deciding(self) -> Script | None:
        """The script that takes part in decisions: the applied one unless it was disabled."""
        return None if self.stats.disabled is not None else self.script

    @property
    def routes_by_memory(self) -> bool:
        """Whether routing reads device memory (only a script's route hook does)."""
        script = self.deciding
        return script is not None and script.has_route

    def use(self, script: Script | None) -> None:
        """Hot reload: the next decision uses the new script (or none), with fresh counters
        (applying a disabled script again enables it)."""
        if self._runner is not None:
            self._runner.close()
        self._runner = ScriptRunner(script, self._wall_seconds) if script is not None else None
        self.stats = ScriptStats()

    def close(self) -> None:
        self.use(None)

    # -- routing -------------------------------------------------------------------------

    async def route(self, snapshot: ClusterSnapshot, req: RouteRequest,
                    job: JobFacts | None = None, *, remember: bool = True
                    ) -> tuple[WorkerView | None, Report]:
        """`remember=False` (explain): the decision leaves no trace, so the next request goes
        where the explanation said it would."""
        script = self.deciding
        if script is None or not script.has_route or req.worker_id is not None:
            return self._builtin_route(snapshot, req, remember)
        report = Report.of(f"script:{script.name}", detailed=req.explain)
        fit = route_candidates(snapshot, req, report)
        if not fit:
            return None, report
        job_table = _job_table(req.model, req.hive_id, req.device, job)
        rows = [self._statics.worker_row(w, snapshot) for w in fit]
        try:
            chosen = await self._ask(report, lambda s: s.route_rows(job_table, rows))
        except NoCapacity as refused:  # none of these workers: a new one may be placed
            report.notes.append(refused.message)
            report.refuse_eligible(f"refused by the script ({refused.message})")
            return None, report
        if chosen is not None:
            picked = next(w for w in fit if w.info.id == chosen)
            report.score(picked.info.id, 1.0)
            return picked, report
        fallback, fb_report = self._builtin_route(snapshot, req, remember)
        report.scores, report.policy = fb_report.scores, f"{report.policy}→{fb_report.policy}"
        return fallback, report

    def _builtin_route(self, snapshot: ClusterSnapshot, req: RouteRequest, remember: bool
                       ) -> tuple[WorkerView | None, Report]:
        if self.routing == "round-robin":
            turn = self._turn + 1
            if remember:
                self._turn = turn
            return route(snapshot, replace(req, policy=self.routing, turn=turn))
        picked, report = route(snapshot, replace(req, after=self._last.get(req.model)))
        if picked is not None and remember:  # equally loaded workers take turns
            self._last[req.model] = picked.info.id
        return picked, report

    # -- placement -----------------------------------------------------------------------

    async def place(self, snapshot: ClusterSnapshot, req: PlaceRequest,
                    job: JobFacts | None = None) -> tuple[Placement | None, Report]:
        req = replace(req, policy=self.placement)
        script = self.deciding
        # Hints (pin or prefer) are the user's own placement: the built-in policy honours them.
        hinted = req.mode != "auto" and (req.hive_id is not None
                                         or req.device not in (None, "auto"))
        if script is None or not script.has_place or hinted:
            return place(snapshot, req)
        report = Report.of(f"script:{script.name}", detailed=req.explain)
        fit = place_candidates(snapshot, req, report, hinted=False)
        if not fit:
            return None, report
        model_table = _model_table(req, job)
        rows = self._statics.device_rows(fit)
        try:
            chosen = await self._ask(report, lambda s: s.place_rows(model_table, rows))
        except NoCapacity as refused:  # `return false`: a decision, with its candidates
            report.refusal = refused
            report.notes.append(refused.message)
            report.refuse_eligible(f"refused by the script ({refused.message})")
            return None, report
        if chosen is not None:
            picked = next(c for c in fit if c.key == chosen)
            report.score(picked.key, 1.0)
            return Placement(picked.hive.id, picked.device.id), report
        fallback, fb_report = place(snapshot, req)
        report.scores, report.policy = fb_report.scores, f"{report.policy}→{fb_report.policy}"
        return fallback, report

    # -- script calls --------------------------------------------------------------------

    async def _ask(self, report: Report, call: Callable[[Script], str | None]) -> str | None:
        runner, stats = self._runner, self.stats
        assert runner is not None
        stats.calls += 1
        try:
            answer = await runner.ask(call)
        except ScriptBusy as exc:  # this call never ran: the overrunning one is counted
            stats.busy += 1
            report.notes.append(f"{exc.message}; built-in policy used")
            return None
        except RbeeError as exc:  # ScriptTimedOut
            self._failed(report, runner, stats, exc.message)
            return None
        report.notes.extend(f"script log: {line}" for line in answer.log)
        error = answer.error
        if isinstance(error, (NoCapacity, PolicyRefused)):  # `false` or {refuse=...}: final
            stats.in_a_row = 0
            raise error
        if isinstance(error, RbeeError):
            self._failed(report, runner, stats, error.message)
            return None
        if error is not None:
            raise error  # not the script's doing: a bug here
        stats.in_a_row = 0
        if answer.value is None:
            stats.fallbacks += 1
            report.notes.append("script had no opinion; built-in policy used")
        return answer.value

    def _failed(self, report: Report, runner: ScriptRunner, stats: ScriptStats,
                message: str) -> None:
        stats.failures += 1
        stats.in_a_row += 1
        stats.last_error = message
        report.notes.append(f"script failed ({message}); built-in policy used")
        logger.warning("scheduling script %s failed: %s", runner.script.name, message)
        # Only while that script is still the one applied (a reload may have come meanwhile).
        if (stats.in_a_row >= self._disable_after and stats.disabled is None
                and self._runner is runner):
            stats.disabled = f"failed {stats.in_a_row} times in a row (last: {message})"
            report.notes.append(f"script {runner.script.name} disabled: {stats.disabled}; "
                                "the built-in policy decides until it is applied again")
            logger.error("scheduling script %s disabled: %s", runner.script.name,
                         stats.disabled)


def _job_table(model: str, hive_id: str | None, device: str | None,
               job: JobFacts | None) -> dict[str, Any]:
    facts = job or JobFacts()
    return {"model": model, "tenant": facts.tenant, "priority": facts.priority,
            "hive_id": hive_id, "device": device, "labels": facts.labels,
            **(facts.usage or {})}


class _Statics:
    """Script rows (rbee.scheduler.lua's WORKER_STATIC + WORKER_LIVE, DEVICE_STATIC +
    DEVICE_LIVE), their static halves reused while the objects they were read from are the
    same ones: the registry keeps a hive's views and devices until its next report, so most
    decisions build no static tuple, and the script's ledger finds each by identity.
    """

    LIMIT = 8192

    def __init__(self) -> None:
        self._workers: dict[str, tuple[WorkerInfo, HiveView | None, tuple[Any, ...]]] = {}
        self._devices: dict[str, tuple[Device, HiveView, tuple[Any, ...]]] = {}

    def worker_row(self, w: WorkerView, snapshot: ClusterSnapshot) -> Row:
        info = w.info
        hive = snapshot.hives_by_id.get(info.hive_id)
        free = 0
        if hive is not None:
            for dev in hive.devices:  # a loop, not next(genexpr): this runs per candidate
                if dev.id == info.device:
                    free = snapshot.available_at(device_key(info.hive_id, dev.id), dev)
                    break
        memo = self._workers
        kept = memo.get(info.id)
        if kept is None or kept[0] is not info or kept[1] is not hive:
            if len(memo) >= self.LIMIT:
                memo.clear()
            kept = memo[info.id] = (info, hive, (info.id, info.hive_id, info.model, info.kind,
                                                 info.device, hive.region if hive else None,
                                                 info.slots))
        return (kept[2], (info.state.value, w.inflight + info.load, free),
                hive.labels if hive else {})

    def device_rows(self, fit: Sequence[DeviceRow]) -> list[Row]:
        memo = self._devices
        if len(memo) + len(fit) > self.LIMIT:
            memo.clear()
        rows: list[Row] = []
        for c in fit:
            kept = memo.get(c.key)
            if kept is None or kept[0] is not c.device or kept[1] is not c.hive:
                d = c.device
                kept = memo[c.key] = (d, c.hive, (c.key, c.hive.id, d.id, d.kind, d.name,
                                                  d.memory_total, c.hive.region))
            rows.append((kept[2], (c.available, c.workers), c.hive.labels))
        return rows


def _model_table(req: PlaceRequest, job: JobFacts | None) -> dict[str, Any]:
    facts = job or JobFacts()
    return {"name": req.model, "kind": _kind(req.model), "size_bytes": req.need,
            "tenant": facts.tenant, "priority": facts.priority, "labels": facts.labels,
            **(facts.usage or {})}


def _kind(model: str) -> str:
    """What the model to place does ("chat" for a name the catalog cannot read)."""
    try:
        return parse_ref(model).kind
    except RbeeError:
        return "chat"



