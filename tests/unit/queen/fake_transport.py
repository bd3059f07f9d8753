"""A scripted WorkerTransport: workers that answer, hang, refuse, stall or trickle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from rbee.queen.transport import TransportError, Upstream

HANG = "hang"  # accepts the connection, never answers (a SIGSTOPped worker)
REFUSE = "refuse"  # connection refused (a dead worker)


class FakeUpstream:
    """A response whose body the test feeds with `send`; `close` is the queen hanging up."""

    def __init__(self, status: int = 200, body: bytes = b"") -> None:
        self._status = status
        self._body = body
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    @property
    def status(self) -> int:
        return self._status

    def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self._chunks.put_nowait(chunk)

    def end(self) -> None:
        self._chunks.put_nowait(None)

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._chunks.get()) is not None:
            yield chunk
        if self.closed:
            raise TransportError("connection closed")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._chunks.put_nowait(None)

    def release(self) -> None:
        return None


@dataclass
class FakeTransport:
    """`behaviour[url prefix]` is HANG, REFUSE, (status, body) for a whole answer, or a
    FakeUpstream for a stream. Probes answer `alive[url prefix]` (default True)."""

    behaviour: dict[str, object] = field(default_factory=dict)
    alive: dict[str, bool] = field(default_factory=dict)
    sent: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)

    def _lookup(self, url: str) -> object:
        for prefix, what in self.behaviour.items():
            if url.startswith(prefix):
                return what
        raise AssertionError(f"no behaviour for {url}")

    async def open(self, url: str, body: bytes, headers: Mapping[str, str]) -> Upstream:
        self.sent.append((url, dict(headers)))
        what = self._lookup(url)
        if what == HANG:
            await asyncio.Event().wait()
        if what == REFUSE:
            raise TransportError("connection refused")
        if isinstance(what, tuple):
            return FakeUpstream(what[0], what[1])
        assert isinstance(what, FakeUpstream)
        return what

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]
                   ) -> tuple[int, bytes]:
        upstream = await self.open(url, body, headers)
        return upstream.status, await upstream.read()

    async def probe(self, url: str) -> bool:
        self.probes.append(url)
        return next((ok for prefix, ok in self.alive.items() if url.startswith(prefix)), True)

    async def close(self) -> None:
        return None
