"""The CLI's client never waits forever on a queen that accepts connections but is hung."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from rbee.client import QueenClient, QueenUnreachable


@pytest.fixture
def hung_queen() -> Iterator[str]:
    """A listening socket nobody accepts from: connects succeed (the backlog), nothing is
    ever answered, as with a SIGSTOPped queen."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_calls_to_a_hung_queen_end_at_the_deadline(hung_queen: str) -> None:
    with QueenClient(hung_queen, timeout=0.3, stream_silence=0.5) as client:
        for call in (lambda: client.submit("status"), lambda: client.job("j"),
                     lambda: list(client.follow("j"))):
            started = time.monotonic()
            with pytest.raises(QueenUnreachable):
                call()
            assert time.monotonic() - started < 5.0
