"""Load events: what the runtime says while its engine loads, and the pipe they go down."""

from __future__ import annotations

import os

import pytest

from rbee.api.cluster import WorkerEvent
from rbee.engines.fake import FakeEngine
from rbee.worker.events import MAX_ERROR_CHARS, EventPipe
from rbee.worker.runtime import Runtime


async def test_a_load_says_its_progress_then_ready() -> None:
    said: list[WorkerEvent] = []
    runtime = Runtime(FakeEngine(), on_event=said.append)
    await runtime.load_engine()
    assert [e.event for e in said] == ["progress"] * 5 + ["ready"]
    assert [e.progress for e in said[:5]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert said[0].stage == "loading weights" and said[-1].stage == "ready"


async def test_a_failed_load_says_why() -> None:
    said: list[WorkerEvent] = []
    runtime = Runtime(FakeEngine(fail_load=True), on_event=said.append)
    await runtime.load_engine()
    assert said[-1].event == "failed"
    assert said[-1].error == "fake engine told to fail loading" == runtime.error


def _read_all(fd: int) -> list[WorkerEvent]:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return [WorkerEvent.model_validate_json(line) for line in data.splitlines()]


def test_the_pipe_carries_one_line_per_event_and_ends_after_ready() -> None:
    read_end, write_end = os.pipe()
    pipe = EventPipe(write_end)
    pipe.send(WorkerEvent(event="progress", progress=0.5, stage="loading weights"))
    pipe.send(WorkerEvent(event="ready", progress=1.0, stage="ready"))
    pipe.send(WorkerEvent(event="progress", progress=1.0, stage="late"))  # dropped: closed
    with pytest.raises(OSError):
        os.fstat(write_end)  # closed by the pipe, so the reader sees its end
    assert [e.event for e in _read_all(read_end)] == ["progress", "ready"]
    os.close(read_end)


def test_a_long_error_is_cut_and_a_gone_reader_is_not_fatal() -> None:
    read_end, write_end = os.pipe()
    EventPipe(write_end).send(WorkerEvent(event="failed", error="x" * 100_000))
    (event,) = _read_all(read_end)
    assert event.error is not None and len(event.error) == MAX_ERROR_CHARS + 1
    os.close(read_end)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the hive gave up on us
    pipe = EventPipe(write_end)
    pipe.send(WorkerEvent(event="progress"))  # logged, not raised
    pipe.close()
