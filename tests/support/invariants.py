"""What must hold after any fault: nothing waits forever, nothing leaks, every job ends once.

Used by the fault-injection tests after each scenario (with real daemons). Orphan processes
are checked by the `queen` fixture itself when it stops the queen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

TERMINAL = ("done", "error", "cancelled")


@dataclass
class Timed:
    """Requests a test made, each with the deadline it must have ended within."""

    spans: list[tuple[str, float, float]] = field(default_factory=list)

    def record(self, what: str, started: float, bound: float) -> None:
        self.spans.append((what, time.monotonic() - started, bound))

    def took(self, what: str, seconds: float, bound: float) -> None:
        """Like `record`, for a span measured elsewhere (e.g. on the thread that made it)."""
        self.spans.append((what, seconds, bound))

    def late(self) -> list[str]:
        return [f"{what}: {took:.1f}s > {bound:.1f}s" for what, took, bound in self.spans
                if took > bound]


def _eventually(check: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        problems = check()
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.1)


def _busy_queues(http: httpx.Client) -> list[str]:
    queues = http.get("/v1/scheduler").json()["queues"]
    return [f"{model}: {q}" for model, q in queues.items() if q["active"] or q["queued"]]


def _job_problems(http: httpx.Client, job_ids: list[str]) -> list[str]:
    problems = []
    for job_id in job_ids:
        job = http.get(f"/v1/jobs/{job_id}").json()
        events = http.get(f"/v1/jobs/{job_id}/stream", timeout=10).text
        ends = sum(events.count(f"event: {kind}\n") for kind in TERMINAL)
        if job.get("state") not in TERMINAL or ends != 1:
            problems.append(f"job {job_id}: state {job.get('state')}, {ends} terminal events")
    return problems


def _reserved(http: httpx.Client) -> list[str]:
    devices = http.get("/v1/scheduler").json()["devices"]
    return [f"{d['key']} reserves {d['reserved']}" for d in devices if d["reserved"]]


def assert_invariants(url: str, timed: Timed, job_ids: Sequence[str] | None = None,
                      stop_workers: bool = True, token: str | None = None) -> None:
    """Every request ended within its bound, every admission slot came back, every job
    (`job_ids`, or every job the queen lists) ended exactly once; with `stop_workers`,
    stopping every worker frees every reservation.
    `token`: the queen's API token, when it requires one (a queen bound beyond loopback)."""
    assert timed.late() == [], "requests waited past their deadline"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        assert _eventually(lambda: _busy_queues(http), 10.0) == [], "admission slots leaked"
        if job_ids is None:
            listed = http.get("/v1/jobs", params={"limit": 1000}).json()["data"]
            job_ids = [job["job_id"] for job in listed]
        assert _eventually(lambda: _job_problems(http, list(job_ids)), 10.0) == []
        if stop_workers:
            for worker in http.get("/v1/workers").json():
                http.post("/v1/jobs", json={"operation": "worker_stop",
                                            "worker_id": worker["id"]})
            assert _eventually(lambda: _reserved(http), 10.0) == [], "reservations leaked"
