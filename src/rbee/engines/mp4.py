"""RGB frames to an H.264 MP4 with PyAV (already rbee's audio encoder: one dependency for
both, no imageio-ffmpeg).

The file is written to a hidden temp name beside `out` and renamed when whole, so a reader
never sees half an MP4 and a failure leaves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import av
import numpy as np


def write_mp4(frames: Iterable[Any], out: str | Path, fps: int) -> int:
    """Encode `frames` (H×W×3 uint8 arrays, or floats in 0..1) to `out`; the frame count.

    yuv420p, as every player expects; its 2×2 chroma needs even sides, which the
    pipelines' multiples of 8 always are.
    """
    out = Path(out)
    part = out.with_name(f".{out.name}.part")
    count = 0
    try:
        with av.open(str(part), mode="w", format="mp4") as container:
            stream: Any = None
            for frame in frames:
                rgb = _uint8(frame)
                if stream is None:
                    stream = container.add_stream("libx264", rate=fps)
                    stream.height, stream.width = rgb.shape[:2]
                    stream.pix_fmt = "yuv420p"
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError("no frames to encode")
            for packet in stream.encode():
                container.mux(packet)
        os.replace(part, out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return count


def _uint8(frame: Any) -> Any:
    array = np.asarray(frame)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"a frame must be H×W×3 RGB, got shape {array.shape}")
    return np.ascontiguousarray(array)
