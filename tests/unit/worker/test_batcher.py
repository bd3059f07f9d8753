"""Concurrent embedding requests share engine calls; each gets its own vectors."""

from __future__ import annotations

import asyncio

import pytest

from rbee.worker.batcher import Batcher


class SlowEngine:
    def __init__(self) -> None:
        self.calls: list[list[list[int]]] = []
        self.go = asyncio.Event()

    async def run(self, sequences: list[list[int]]) -> list[list[float]]:
        self.calls.append(sequences)
        await self.go.wait()
        if any(s == [666] for s in sequences):
            raise RuntimeError("engine broke")
        return [[float(s[0])] for s in sequences]


async def test_requests_arriving_during_a_call_go_together_in_the_next() -> None:
    engine = SlowEngine()
    batcher = Batcher(engine.run)
    first = asyncio.create_task(batcher.embed([[1]]))
    await asyncio.sleep(0)
    second = asyncio.create_task(batcher.embed([[2], [3]]))
    third = asyncio.create_task(batcher.embed([[4]]))
    await asyncio.sleep(0)
    engine.go.set()
    assert await first == [[1.0]]
    assert await second == [[2.0], [3.0]] and await third == [[4.0]]
    assert engine.calls == [[[1]], [[2], [3], [4]]]
    assert batcher.calls == 2


async def test_a_batch_holds_at_most_max_inputs_but_a_big_request_goes_alone() -> None:
    engine = SlowEngine()
    engine.go.set()
    batcher = Batcher(engine.run, max_inputs=3)
    results = await asyncio.gather(batcher.embed([[1], [2]]), batcher.embed([[3], [4]]),
                                   batcher.embed([[5], [6], [7], [8]]))
    assert results[2] == [[5.0], [6.0], [7.0], [8.0]]
    assert [len(c) for c in engine.calls] == [2, 2, 4]


async def test_a_request_given_up_is_left_out_and_a_failure_fails_only_its_batch() -> None:
    engine = SlowEngine()
    batcher = Batcher(engine.run)
    first = asyncio.create_task(batcher.embed([[1]]))
    await asyncio.sleep(0)
    gone = asyncio.create_task(batcher.embed([[9]]))
    broken = asyncio.create_task(batcher.embed([[666]]))
    await asyncio.sleep(0)
    gone.cancel()
    engine.go.set()
    assert await first == [[1.0]]
    with pytest.raises(RuntimeError, match="engine broke"):
        await broken
    assert [9] not in engine.calls[1]  # the hung-up request did not run
    assert await batcher.embed([[5]]) == [[5.0]]  # the next call works again
    await batcher.close()
