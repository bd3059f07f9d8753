"""The fake image engine: a flat colour per prompt, seed and index, step by step, an edit
that paints only where the mask is white, and cancellation before the next step."""

from __future__ import annotations

import threading

from rbee.engines.base import ImageJob, ImageStep, Picture
from rbee.engines.fake_image import FakeImageMaker, colour


def test_steps_then_a_picture_for_each_of_n() -> None:
    items = list(FakeImageMaker().make(ImageJob("a bee", n=2, size=(16, 8), steps=2),
                                       threading.Event()))
    assert items[:2] == [ImageStep(0, 1, 2), ImageStep(0, 2, 2)]
    pictures = [i for i in items if isinstance(i, Picture)]
    assert [(p.width, p.height, len(p.pixels)) for p in pictures] == [(16, 8, 384)] * 2
    assert pictures[0].pixels[:3] == colour("a bee", None, 0) != pictures[1].pixels[:3]


def test_an_edit_paints_only_under_the_white_mask() -> None:
    image = Picture(2, 1, b"\x01\x02\x03\x04\x05\x06")
    mask = Picture(2, 1, b"\xff\x00", "L")
    [picture] = [i for i in FakeImageMaker().make(
        ImageJob("x", size=(2, 1), image=image, mask=mask), threading.Event())
        if isinstance(i, Picture)]
    assert picture.pixels == colour("x", None, 0) + b"\x04\x05\x06"


def test_cancel_stops_before_the_next_step() -> None:
    cancel = threading.Event()
    made = FakeImageMaker().make(ImageJob("x", steps=10), cancel)
    assert next(made) == ImageStep(0, 1, 10)
    cancel.set()
    assert list(made) == []
