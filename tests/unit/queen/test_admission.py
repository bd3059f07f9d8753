"""Admission's per-model lanes stay bounded; per-model maps in the dispatcher too."""

from __future__ import annotations

import asyncio

from rbee.core.clock import FakeClock
from rbee.queen.admission import MAX_LANES, Admission


async def test_lanes_of_names_nobody_uses_any_more_are_dropped() -> None:
    """Every model name asked for gets a lane; a tenant inventing names must not grow the
    map for ever: idle lanes go once there are MAX_LANES, busy ones stay."""
    admission = Admission(FakeClock(), max_queue=4, capacity=lambda _m: 1)
    busy = await admission.enter("busy")
    for n in range(3 * MAX_LANES):
        (await admission.enter(f"made-up-{n}")).release()
    models = {model for model, _, _ in admission.lanes()}
    assert len(models) <= MAX_LANES and "busy" in models
    assert admission.active("busy") == 1
    busy.release()


async def test_the_dispatchers_per_model_maps_stay_bounded() -> None:
    from typing import cast

    from rbee.models.catalog import ModelRef
    from rbee.queen.dispatch import MAX_MODELS_TRACKED, Dispatcher
    from rbee.queen.hive_client import HiveClient
    from rbee.queen.registry import Registry

    dispatcher = Dispatcher(Registry(FakeClock(), 2.0), cast(HiveClient, object()),
                            spawn_timeout=5, default_threads=None, estimator=lambda _r: 7)
    held = dispatcher._model_lock("in-use")
    await held.acquire()
    for n in range(3 * MAX_MODELS_TRACKED):
        name = f"made-up-{n}"
        assert dispatcher.need(ModelRef("hf", name, "x")) == 7
        dispatcher._model_lock(name)
    assert len(dispatcher._estimates) <= MAX_MODELS_TRACKED
    assert len(dispatcher._model_locks) <= MAX_MODELS_TRACKED
    assert dispatcher._model_lock("in-use") is held  # a lock someone holds is never replaced
    waiter = asyncio.ensure_future(held.acquire())
    await asyncio.sleep(0)
    held.release()  # free, but promised to the waiter, which has not run yet
    for n in range(3 * MAX_MODELS_TRACKED):
        dispatcher._model_lock(f"more-{n}")
    assert dispatcher._model_lock("in-use") is held  # so it is not dropped either
    await waiter
    held.release()
