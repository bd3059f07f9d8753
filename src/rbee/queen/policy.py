"""The scheduling policy in force: a built-in one, optionally steered by a user's Lua script.

Hard filters (model, hints, hive up, ready, memory) always run first, in Python; a script
only chooses among the candidates that passed them, so no script can route to a dead worker
or over-commit a device. A script that answers nil leaves the choice to the built-in policy;
one that fails (error, instruction budget, memory cap, bad answer) is counted, noted in the
decision's report (and so in the job's narration), and the built-in policy decides. One that
answers `false` refuses every candidate: the request fails with 503 and the reason (a rule such
as data residency must not be "helpfully" overridden by the fallback).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from rbee.api.cluster import Device, WorkerInfo
from rbee.core.errors import NoCapacity, RbeeError
from rbee.scheduler.placement import Placement, PlaceRequest, place
from rbee.scheduler.placement import candidates as place_candidates
from rbee.scheduler.report import Report
from rbee.scheduler.routing import RouteRequest, route
from rbee.scheduler.routing import candidates as route_candidates
from rbee.scheduler.snapshot import ClusterSnapshot, DeviceRow, HiveView, WorkerView, device_key

if TYPE_CHECKING:  # lupa loads only once a script is applied
    from rbee.scheduler.lua import Row

logger = logging.getLogger(__name__)


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
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ScriptStats:
    calls: int = 0
    failures: int = 0
    fallbacks: int = 0  # nil answers: the built-in policy decided
    last_error: str | None = None


class SchedulingPolicy:
    def __init__(self, routing: str = "least-loaded", placement: str = "best-device") -> None:
        self.routing = routing
        self.placement = placement
        self.script: Script | None = None
        self.stats = ScriptStats()
        self._turn = 0
        self._last: dict[str, str] = {}  # model → the worker routed to last (ties take turns)
        self._statics = _Statics()

    @property
    def routes_by_memory(self) -> bool:
        """Whether routing reads device memory (only a script's route hook does)."""
        return self.script is not None and self.script.has_route

    def use(self, script: Script | None) -> None:
        """Hot reload: the next decision uses the new script (or none)."""
        self.script = script
        self.stats = ScriptStats()

    # -- routing -------------------------------------------------------------------------

    def route(self, snapshot: ClusterSnapshot, req: RouteRequest, job: JobFacts | None = None,
              *, remember: bool = True) -> tuple[WorkerView | None, Report]:
        """`remember=False` (explain): the decision leaves no trace, so the next request goes
        where the explanation said it would."""
        script = self.script
        if script is None or not script.has_route or req.worker_id is not None:
            return self._builtin_route(snapshot, req, remember)
        report = Report(policy=f"script:{script.name}")
        fit = route_candidates(snapshot, req, report)
        if not fit:
            return None, report
        try:
            chosen = self._ask(report, lambda s: s.route_rows(
                _job_table(req.model, req.hive_id, req.device, job),
                [self._statics.worker_row(w, snapshot) for w in fit]))
        except NoCapacity as refused:  # none of these workers: a new one may be placed
            report.notes.append(refused.message)
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

    def place(self, snapshot: ClusterSnapshot, req: PlaceRequest,
              job: JobFacts | None = None) -> tuple[Placement | None, Report]:
        req = replace(req, policy=self.placement)
        script = self.script
        # Hints (pin or prefer) are the user's own placement: the built-in policy honours them.
        hinted = req.mode != "auto" and (req.hive_id is not None
                                         or req.device not in (None, "auto"))
        if script is None or not script.has_place or hinted:
            return place(snapshot, req)
        report = Report(policy=f"script:{script.name}")
        fit = place_candidates(snapshot, req, report, hinted=False)
        if not fit:
            return None, report
        try:
            chosen = self._ask(report, lambda s: s.place_rows(
                _model_table(req, job), self._statics.device_rows(fit)))
        except NoCapacity as refused:  # `return false`: a decision, with its candidates
            report.refusal = refused
            report.notes.append(refused.message)
            return None, report
        if chosen is not None:
            picked = next(c for c in fit if c.key == chosen)
            report.score(picked.key, 1.0)
            return Placement(picked.hive.id, picked.device.id), report
        fallback, fb_report = place(snapshot, req)
        report.scores, report.policy = fb_report.scores, f"{report.policy}→{fb_report.policy}"
        return fallback, report

    # -- script calls --------------------------------------------------------------------

    def _ask(self, report: Report, call: Any) -> str | None:
        script = self.script
        assert script is not None
        self.stats.calls += 1
        try:
            answer: str | None = call(script)
        except NoCapacity:  # the script refused every candidate (`return false`): no fallback
            report.notes.extend(f"script log: {line}" for line in script.last_log)
            raise
        except RbeeError as exc:
            report.notes.extend(f"script log: {line}" for line in script.last_log)
            self.stats.failures += 1
            self.stats.last_error = exc.message
            report.notes.append(f"script failed ({exc.message}); built-in policy used")
            logger.warning("scheduling script %s failed: %s", script.name, exc.message)
            return None
        report.notes.extend(f"script log: {line}" for line in script.last_log)
        if answer is None:
            self.stats.fallbacks += 1
            report.notes.append("script had no opinion; built-in policy used")
        return answer


def _job_table(model: str, hive_id: str | None, device: str | None,
               job: JobFacts | None) -> dict[str, Any]:
    facts = job or JobFacts()
    return {"model": model, "tenant": facts.tenant, "priority": facts.priority,
            "hive_id": hive_id, "device": device, "labels": facts.labels}


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
            kept = memo[info.id] = (info, hive, (info.id, info.hive_id, info.model, info.device,
                                                 hive.region if hive else None))
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
    return {"name": req.model, "size_bytes": req.need, "tenant": facts.tenant,
            "priority": facts.priority, "labels": facts.labels}



