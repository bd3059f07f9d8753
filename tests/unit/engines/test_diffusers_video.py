"""The diffusers video engine's own parts that need no torch: device names, and the bridge
from diffusers' step callback to the iterator the worker reads (the pipeline itself runs in
tests/e2e/test_real_video.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from rbee.engines.base import VideoStep
from rbee.engines.diffusers_video import _as_they_come, torch_device


def test_devices_as_torch_sees_them() -> None:
    assert [torch_device(d) for d in ("cpu", "cuda:0", "cuda:3", "metal:0")] == [
        "cpu", "cuda", "cuda", "mps"]  # the hive shows a worker only its own GPU


def test_steps_come_as_emitted_and_errors_are_raised_to_the_reader() -> None:
    def run(emit: Callable[[VideoStep], None]) -> None:
        emit(VideoStep(1, 2))
        emit(VideoStep(2, 2))
        raise RuntimeError("out of memory")

    steps = _as_they_come(run)
    assert [next(steps), next(steps)] == [VideoStep(1, 2), VideoStep(2, 2)]
    with pytest.raises(RuntimeError, match="out of memory"):
        next(steps)


def test_closing_waits_for_the_pipeline_to_stop() -> None:
    stop, stopped = threading.Event(), threading.Event()

    def run(emit: Callable[[VideoStep], None]) -> None:
        step = 0
        while not stop.wait(0.01):  # a pipeline checking its cancel event each step
            step += 1
            emit(VideoStep(step, 1000))
        stopped.set()

    steps = _as_they_come(run)
    next(steps)
    stop.set()
    steps.close()  # returns once the pipeline's thread has ended: no engine left running
    assert stopped.is_set()
