"""Worker states and the transitions each allows."""

from __future__ import annotations

from enum import StrEnum


class WorkerState(StrEnum):
    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"
    # Only in the queen's listings: the worker's hive is down, so nobody knows. No process
    # is ever in this state, hence no transitions.
    UNKNOWN = "unknown"


WORKER_TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.STARTING: frozenset(
        {WorkerState.LOADING, WorkerState.READY, WorkerState.STOPPING, WorkerState.CRASHED}
    ),
    WorkerState.LOADING: frozenset({WorkerState.READY, WorkerState.STOPPING, WorkerState.CRASHED}),
    WorkerState.READY: frozenset({WorkerState.STOPPING, WorkerState.CRASHED}),
    WorkerState.STOPPING: frozenset({WorkerState.STOPPED, WorkerState.CRASHED}),
    WorkerState.STOPPED: frozenset(),
    WorkerState.CRASHED: frozenset(),
    WorkerState.UNKNOWN: frozenset(),
}


def can_transition(old: WorkerState, new: WorkerState) -> bool:
    return new in WORKER_TRANSITIONS[old]
