"""Concurrent embedding requests in one engine call.

While the engine embeds one batch, requests that arrive wait; when it is done, all of them go
together in the next call (up to `max_inputs` inputs), and each gets its own vectors back. A
single request is embedded at once: nothing waits for company. A request whose client hung
up before its batch started is left out; an engine failure fails the requests of its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Vectors = list[list[float]]
Run = Callable[[list[list[int]]], Awaitable[Vectors]]


class Batcher:
    def __init__(self, run: Run, max_inputs: int = 2048) -> None:
        self._run = run
        self._max_inputs = max_inputs
        self._pending: list[tuple[list[list[int]], asyncio.Future[Vectors]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.calls = 0  # engine calls made (tests and benchmarks look)

    async def embed(self, sequences: list[list[int]]) -> Vectors:
        future: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        self._pending.append((sequences, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="embed-batches")
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._take()
            if not batch:
                continue
            flat = [seq for sequences, _ in batch for seq in sequences]
            self.calls += 1
            try:
                vectors = await self._run(flat)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for sequences, future in batch:
                if not future.done():  # its client may have gone meanwhile
                    future.set_result(vectors[start:start + len(sequences)])
                start += len(sequences)

    def _take(self) -> list[tuple[list[list[int]], asyncio.Future[Vectors]]]:
        """The next batch: waiting requests in arrival order, up to `max_inputs` inputs (a
        larger single request goes alone). Requests already given up are dropped."""
        batch: list[tuple[list[list[int]], asyncio.Future[Vectors]]] = []
        size = 0
        while self._pending:
            sequences, future = self._pending[0]
            if future.done():
                self._pending.pop(0)
                continue
            if batch and size + len(sequences) > self._max_inputs:
                break
            batch.append(self._pending.pop(0))
            size += len(sequences)
        return batch

    async def close(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
