"""The fake video engine: a real MP4 of solid-colour frames, a step at a time, stopping at
the step under way when cancelled (and writing nothing then)."""

from __future__ import annotations

import threading
from pathlib import Path

import av

from rbee.engines.base import VideoSpec
from rbee.engines.fake_video import FakeVideoMaker, colour


def _spec(out: Path, steps: int = 3) -> VideoSpec:
    return VideoSpec(prompt="a bee", width=32, height=16, frames=5, fps=8, steps=steps,
                     out=str(out))


def test_steps_then_a_decodable_mp4(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    steps = [(s.step, s.steps) for s in FakeVideoMaker().make(_spec(out), threading.Event())]
    assert steps == [(0, 3), (1, 3), (2, 3), (3, 3)]  # 0: started
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert (len(frames), frames[0].shape) == (5, (16, 32, 3))
    # frame i is the prompt's colour times (0.5 + i/5); H.264's yuv420 is lossy: ±12
    expected = [min(255, c * 0.9) for c in colour("a bee")]
    assert all(abs(int(x) - y) <= 12 for x, y in zip(frames[2][8, 16], expected, strict=True))
    assert frames[4].mean() > frames[0].mean()  # the frames brighten: they differ
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # no temp file left


def test_cancel_stops_at_the_step_and_writes_nothing(tmp_path: Path) -> None:
    cancel = threading.Event()
    maker = FakeVideoMaker()
    for step in maker.make(_spec(tmp_path / "v.mp4", steps=10), cancel):
        if step.step == 2:
            cancel.set()
    assert maker.stopped_at == 2 and list(tmp_path.iterdir()) == []

