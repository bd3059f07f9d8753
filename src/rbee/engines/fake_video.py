"""A video engine for tests, no weights: solid-colour frames as a real MP4 (PyAV).

Each frame is one colour, from a hash of the prompt, brightening frame by frame, so a test can
tell the frames apart and check the prompt reached the engine. `step_seconds` is the time each
"denoising step" takes, so tests can cancel mid-video; `stopped_at` records the last step done.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Literal

import numpy as np

from rbee.engines.base import ProgressFn, VideoSpec, VideoStep
from rbee.engines.mp4 import write_mp4

logger = logging.getLogger(__name__)


def colour(prompt: str) -> tuple[int, int, int]:
    r, g, b = hashlib.blake2b(prompt.encode(), digest_size=3).digest()
    return r, g, b


class FakeVideoMaker:
    name = "fake"
    kind: Literal["video"] = "video"

    def __init__(self, *, load_seconds: float = 0.0, step_seconds: float = 0.0,
                 slots: int = 1) -> None:
        self.slots = slots
        self._load_seconds = load_seconds
        self._step_seconds = step_seconds
        self.stopped_at = 0  # the last step a video finished (tests look)

    def load(self, progress: ProgressFn) -> None:
        progress(0.0, "loading pipeline")
        time.sleep(self._load_seconds)
        progress(1.0, "ready")

    def make(self, spec: VideoSpec, cancel: threading.Event) -> Iterator[VideoStep]:
        yield VideoStep(0, spec.steps)
        for step in range(1, spec.steps + 1):
            if cancel.wait(self._step_seconds) or cancel.is_set():
                # the same line as the real engine's: tests measure the steps after a cancel
                logger.info("video cancelled after step %d of %d", step - 1, spec.steps)
                return
            self.stopped_at = step
            yield VideoStep(step, spec.steps)
        base = np.array(colour(spec.prompt), dtype=np.float32)
        frames = (np.full((spec.height, spec.width, 3), np.clip(base * (0.5 + i / spec.frames),
                                                                 0, 255), dtype=np.uint8)
                  for i in range(spec.frames))
        write_mp4(frames, spec.out, spec.fps)

    def close(self) -> None:
        return None
