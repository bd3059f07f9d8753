"""A deterministic image engine for tests: one flat colour per prompt, step by step.

The colour is a hash of the prompt, the seed and the image's index, so the same request gives
the same pixels and each of n images differs. Each of `STEPS` "denoising steps" takes
`step_seconds` (a test seam, as a real pipeline's steps take time) and is reported as an
ImageStep; `cancel` is checked before each. An edit paints the colour where the mask is white
and keeps the image's own pixels elsewhere, which is what a real edit promises.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Literal

from rbee.engines.base import ImageJob, ImageStep, Picture, ProgressFn

STEPS = 4
SIZE = (64, 64)


def colour(prompt: str, seed: int | None, index: int) -> bytes:
    """Three bytes of RGB for this prompt, seed and image."""
    return hashlib.blake2b(f"{seed}:{index}:{prompt}".encode(), digest_size=3).digest()


class FakeImageMaker:
    name = "fake"
    kind: Literal["image"] = "image"
    can_edit = True

    def __init__(self, *, load_seconds: float = 0.0, step_seconds: float = 0.0,
                 slots: int = 1) -> None:
        self.slots = slots
        self._load_seconds = load_seconds
        self._step_seconds = step_seconds

    def load(self, progress: ProgressFn) -> None:
        progress(0.0, "loading pipeline")
        time.sleep(self._load_seconds)
        progress(1.0, "ready")

    def default_size(self) -> tuple[int, int]:
        return SIZE

    def make(self, job: ImageJob, cancel: threading.Event) -> Iterator[ImageStep | Picture]:
        width, height = job.size or SIZE  # an edit's size is its image's (the worker's)
        steps = job.steps or STEPS
        for index in range(job.n):
            for step in range(1, steps + 1):
                if cancel.is_set():
                    return
                cancel.wait(self._step_seconds)
                yield ImageStep(index, step, steps)
            flat = colour(job.prompt, job.seed, index) * (width * height)
            yield Picture(width, height, _edited(flat, job) if job.image else flat)

    def close(self) -> None:
        return None


def _edited(painted: bytes, job: ImageJob) -> bytes:
    """`painted` where the mask is white, the image's pixels where it is black."""
    assert job.image is not None and job.mask is not None
    out = bytearray(job.image.pixels)
    for i, m in enumerate(job.mask.pixels):
        if m >= 128:
            out[3 * i:3 * i + 3] = painted[3 * i:3 * i + 3]
    return bytes(out)
