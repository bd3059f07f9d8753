"""Text-to-video with diffusers: any video pipeline saved as a folder (`model_index.json`),
e.g. AnimateDiff (a MotionAdapter over a Stable Diffusion UNet) or TextToVideoSD.

torch and diffusers are imported here only (the registry imports this module lazily), so the
queen and the other workers never load them. The pipeline runs on the engine's own thread; a
denoising step's end is reported through `callback_on_step_end`, which is also where a
cancelled video stops: within one step.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Literal

from rbee.core.errors import EngineError
from rbee.engines.base import ProgressFn, VideoSpec, VideoStep
from rbee.engines.mp4 import write_mp4

logger = logging.getLogger(__name__)
_END = object()


class _Stopped(Exception):
    """Raised from the step callback to leave the pipeline when the video is cancelled."""


class DiffusersVideoMaker:
    name = "diffusers_video"
    kind: Literal["video"] = "video"

    def __init__(self, model_path: str, *, device: str = "cpu", threads: int | None = None,
                 slots: int = 1) -> None:
        self._path = model_path
        self._device = torch_device(device)
        self._threads = threads
        self.slots = slots
        self._pipe: Any = None

    def load(self, progress: ProgressFn) -> None:
        progress(0.0, "importing torch and diffusers")
        import torch
        from diffusers import DiffusionPipeline

        if self._threads:
            torch.set_num_threads(self._threads)
        progress(0.3, "loading pipeline")
        try:
            pipe = DiffusionPipeline.from_pretrained(  # type: ignore[no-untyped-call]
                self._path)
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot load a diffusers pipeline from {self._path}: {exc}"
                              ) from exc
        if "num_frames" not in _parameters(pipe):
            raise EngineError(f"{type(pipe).__name__} at {self._path} is not a video pipeline "
                              "(it takes no num_frames)")
        pipe.set_progress_bar_config(disable=True)
        self._pipe = pipe.to(self._device)
        progress(1.0, "ready")

    def make(self, spec: VideoSpec, cancel: threading.Event) -> Iterator[VideoStep]:
        if self._pipe is None:
            raise EngineError("the pipeline is not loaded")
        yield VideoStep(0, spec.steps)
        yield from _as_they_come(lambda emit: self._run(spec, cancel, emit))

    def _run(self, spec: VideoSpec, cancel: threading.Event,
             emit: Callable[[VideoStep], None]) -> None:
        import torch

        def on_step(_pipe: Any, index: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            emit(VideoStep(index + 1, spec.steps))
            if cancel.is_set():
                logger.info("video cancelled after step %d of %d", index + 1, spec.steps)
                raise _Stopped
            return kwargs

        generator = None
        if spec.seed is not None:
            generator = torch.Generator(device="cpu").manual_seed(spec.seed)
        try:
            with torch.inference_mode():
                result = self._pipe(
                    prompt=spec.prompt, negative_prompt=spec.negative_prompt,
                    num_frames=spec.frames, height=spec.height, width=spec.width,
                    num_inference_steps=spec.steps, generator=generator, output_type="np",
                    callback_on_step_end=on_step)
        except _Stopped:
            return
        except (RuntimeError, ValueError) as exc:  # shapes the model cannot make, OOM…
            raise EngineError(f"the pipeline failed: {exc}") from exc
        if cancel.is_set():
            return
        write_mp4(_frames(result.frames), spec.out, spec.fps)

    def close(self) -> None:
        self._pipe = None


def torch_device(device: str) -> str:
    """torch's name for rbee's device. The hive shows a worker only its own GPU
    (CUDA_VISIBLE_DEVICES=N), so "cuda:N" is torch's one visible "cuda" device."""
    if device.startswith("cuda"):
        return "cuda"
    return "mps" if device.startswith("metal") else "cpu"


def _parameters(pipe: Any) -> set[str]:
    import inspect

    return set(inspect.signature(pipe.__call__).parameters)


def _frames(frames: Any) -> Any:
    """The first (only) video of a pipeline's output: (frames, H, W, 3) floats in 0..1.

    Pipelines return a batch, (1, F, H, W, 3) as an array or a list of per-video lists."""
    return frames[0]


def _as_they_come(run: Callable[[Callable[[VideoStep], None]], None]) -> Iterator[VideoStep]:
    """Run `run(emit)` on a thread and yield what it emits as it does (diffusers reports
    steps by callback, the runtime reads an iterator); its exception is raised here."""
    items: queue.SimpleQueue[object] = queue.SimpleQueue()

    def body() -> None:
        try:
            run(items.put)
        except BaseException as exc:
            items.put(exc)
        finally:
            items.put(_END)

    thread = threading.Thread(target=body, name="diffusers-video", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        thread.join()
