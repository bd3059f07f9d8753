"""Any diffusers text-to-image pipeline (a folder with model_index.json) as an image engine.

`DiffusionPipeline.from_pretrained` picks the pipeline class the folder names; when diffusers
has an inpainting twin for it (`AutoPipelineForInpainting.from_pipe`, sharing the same
weights, no second copy in memory) the worker also serves edits. Each call runs on a thread of
its own so the engine can yield an ImageStep at every denoising step (diffusers'
`callback_on_step_end`); the same callback raises once `cancel` is set, so a cancelled image
stops within one step instead of finishing its remaining steps.

Edits keep the image's own pixels wherever the mask is black: the pipeline repaints the whole
picture through its VAE, so its output is composited over the original (what OpenAI's edit
promises: only the transparent part of the mask changes).
"""

from __future__ import annotations

import inspect
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from rbee.core.errors import EngineError
from rbee.engines.base import ImageJob, ImageStep, Picture, ProgressFn
from rbee.models.catalog import diffusers_kind, pipeline_class

_DONE = object()


class _Cancelled(Exception):
    """Raised inside the pipeline's step callback: the request was cancelled."""


def torch_device(device: str) -> str:
    """rbee's device name as torch spells it. The hive shows a cuda:N worker only its own
    GPU (CUDA_VISIBLE_DEVICES), which torch then calls cuda:0."""
    if device.startswith("cuda"):
        return "cuda:0"
    return "mps" if device == "metal" else "cpu"


class DiffusersImageMaker:
    name = "diffusers"
    kind: Literal["image"] = "image"

    def __init__(self, model_path: str, *, device: str = "cpu", threads: int | None = None,
                 slots: int = 1) -> None:
        self.slots = slots  # one pipeline call at a time: its scheduler holds the step state
        self.can_edit = False
        self._path = model_path
        self._device = torch_device(device)
        self._threads = threads
        self._pipe: Any = None
        self._inpaint: Any = None
        self._steps_default = 50

    def load(self, progress: ProgressFn) -> None:
        progress(0.0, "loading pipeline")
        folder = Path(self._path)
        try:
            kind = diffusers_kind(pipeline_class(folder))
        except (OSError, ValueError) as exc:
            raise EngineError(f"{self._path} is not a diffusers pipeline: {exc}") from exc
        if kind != "image":
            raise EngineError(f"{self._path} holds a {kind} pipeline, not an image one")
        try:
            import torch
            from diffusers import AutoPipelineForInpainting, DiffusionPipeline
        except ImportError as exc:
            raise EngineError("diffusers is not installed: pip install 'rbee[diffusion]'"
                              ) from exc
        if self._threads:
            torch.set_num_threads(self._threads)
        dtype = torch.float32 if self._device == "cpu" else torch.float16
        try:
            pipe = DiffusionPipeline.from_pretrained(  # type: ignore[no-untyped-call]
                folder, dtype=dtype)
            pipe = pipe.to(self._device)
        except Exception as exc:  # diffusers raises many kinds for a broken folder
            raise EngineError(f"diffusers could not load {self._path}: {exc}") from exc
        pipe.set_progress_bar_config(disable=True)
        progress(0.8, "looking for an inpainting pipeline")
        try:  # the same modules, no copy: edits cost no memory
            self._inpaint = AutoPipelineForInpainting.from_pipe(pipe)
            self._inpaint.set_progress_bar_config(disable=True)
            self.can_edit = True
        except Exception:  # no inpainting twin for this pipeline class: edits are a 400
            self._inpaint = None
        default = inspect.signature(pipe.__call__).parameters.get("num_inference_steps")
        if default is not None and isinstance(default.default, int):
            self._steps_default = default.default
        self._pipe = pipe
        progress(1.0, "ready")

    def default_size(self) -> tuple[int, int]:
        pipe = self._pipe
        unet = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        sample = getattr(getattr(unet, "config", None), "sample_size", None)
        scale = getattr(pipe, "vae_scale_factor", 8)
        if isinstance(sample, int) and isinstance(scale, int):
            return sample * scale, sample * scale
        return 512, 512

    def make(self, job: ImageJob, cancel: threading.Event) -> Iterator[ImageStep | Picture]:
        if job.image is not None and self._inpaint is None:
            raise EngineError("this pipeline cannot edit images")
        for index in range(job.n):
            if cancel.is_set():
                return
            yield from self._one(job, index, cancel)

    def _one(self, job: ImageJob, index: int, cancel: threading.Event
             ) -> Iterator[ImageStep | Picture]:
        """One image, made on a thread of its own so its steps can be yielded as they end."""
        items: queue.Queue[object] = queue.Queue()
        steps = job.steps or self._steps_default
        stop = threading.Event()  # this generator was closed: its consumer is gone

        def step_end(_pipe: Any, step: int, _timestep: Any,
                     tensors: dict[str, Any]) -> dict[str, Any]:
            if cancel.is_set() or stop.is_set():
                raise _Cancelled
            items.put(ImageStep(index, step + 1, steps))
            return tensors

        def run() -> None:
            try:
                items.put(self._call(job, index, steps, step_end))
            except _Cancelled:
                pass
            except Exception as exc:
                items.put(exc)
            finally:
                items.put(_DONE)

        thread = threading.Thread(target=run, name=f"diffusers-{index}", daemon=True)
        thread.start()
        try:
            while (item := items.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise EngineError(f"the pipeline failed: {item}") from item
                yield item  # type: ignore[misc]
        finally:
            # Not a moment after: the engine's slot is free once this returns, and the
            # pipeline must not run two calls at once. It ends at its next step.
            stop.set()
            thread.join()

    def _call(self, job: ImageJob, index: int, steps: int, step_end: Any) -> Picture:
        import torch
        from PIL import Image

        pipe = self._pipe if job.image is None else self._inpaint
        width, height = job.size or self.default_size()
        kwargs: dict[str, Any] = {"prompt": job.prompt, "num_inference_steps": steps,
                                  "width": width, "height": height, "output_type": "pil"}
        if job.negative_prompt:
            kwargs["negative_prompt"] = job.negative_prompt
        if job.guidance_scale is not None:
            kwargs["guidance_scale"] = job.guidance_scale
        if job.seed is not None:  # each of n images its own seed: they differ, reproducibly
            kwargs["generator"] = torch.Generator("cpu").manual_seed(job.seed + index)
        if "callback_on_step_end" in inspect.signature(pipe.__call__).parameters:
            kwargs["callback_on_step_end"] = step_end
        original = mask = None
        if job.image is not None and job.mask is not None:
            original = _pil(job.image).convert("RGB")
            mask = _pil(job.mask)
            kwargs.update(image=original, mask_image=mask)
        with torch.inference_mode():
            out = pipe(**kwargs).images[0].convert("RGB")
        if out.size != (width, height):
            out = out.resize((width, height))
        if original is not None and mask is not None:
            out = Image.composite(out, original, mask)  # white: painted; black: kept
        return Picture(out.width, out.height, out.tobytes())

    def close(self) -> None:
        self._pipe = self._inpaint = None


def _pil(picture: Picture) -> Any:
    from PIL import Image

    return Image.frombytes(picture.mode, (picture.width, picture.height), picture.pixels)
