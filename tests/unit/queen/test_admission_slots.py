"""Admission capacity is the sum of what each ready worker advertises it serves at once."""

from __future__ import annotations

import asyncio

from rbee import __version__
from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.states import WorkerState
from rbee.queen.admission import Admission
from rbee.queen.registry import Registry

CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=2**36, memory_free=2**36)


def worker(wid: str, slots: int, state: WorkerState = WorkerState.READY,
           model: str = "m") -> WorkerInfo:
    return WorkerInfo(id=wid, hive_id="h", model=model, model_path="", device="cpu",
                      engine="fake", url=f"http://{wid}", state=state, slots=slots)


def registry(*workers: WorkerInfo) -> Registry:
    reg = Registry(FakeClock(), 2.0)
    reg.report(HiveTelemetry(hive_id="h", url="http://h", version=__version__, pid=1,
                             devices=[CPU], workers=list(workers)))
    return reg


def test_ready_slots_sum_what_each_ready_worker_advertises() -> None:
    reg = registry(worker("batching", 4), worker("llama", 1),
                   worker("loading", 8, WorkerState.LOADING), worker("other", 16, model="o"))
    assert reg.ready_slots("m") == 5
    reg.set_unresponsive("batching")  # out of routing: its slots are not capacity either
    assert reg.ready_slots("m") == 1


async def test_mixed_capacity_workers_admit_the_sum_of_their_slots() -> None:
    reg = registry(worker("batching", 4), worker("llama", 1))
    admission = Admission(FakeClock(), max_queue=8, capacity=reg.ready_slots)
    tickets = [await asyncio.wait_for(admission.enter("m"), 1) for _ in range(5)]
    assert admission.active("m") == 5  # 4 + 1, not 2 workers x 1
    sixth = asyncio.create_task(admission.enter("m"))
    await asyncio.sleep(0)
    assert not sixth.done() and admission.queued("m") == 1
    tickets[0].release()
    (await asyncio.wait_for(sixth, 1)).release()
    for ticket in tickets[1:]:
        ticket.release()
    assert admission.active("m") == 0


async def test_a_model_with_no_ready_worker_still_admits_the_one_that_places_it() -> None:
    reg = registry(worker("loading", 4, WorkerState.LOADING))
    admission = Admission(FakeClock(), max_queue=8, capacity=reg.ready_slots)
    first = await asyncio.wait_for(admission.enter("m"), 1)
    second = asyncio.create_task(admission.enter("m"))
    await asyncio.sleep(0)
    assert not second.done()
    second.cancel()
    first.release()
