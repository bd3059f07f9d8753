"""A stream whose client stops reading (connection open, window shut) must still end, giving
back the worker and the admission slot: the connection is dropped once the client has read
nothing for `send_timeout`, and a cut worker stream ends its response soon after (as
`Relay.forward` does for chat). Real queen, hive and fake worker; a raw socket client."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.daemons import Daemon, rbee_env, running_queen

pytestmark = pytest.mark.e2e


@pytest.fixture
def queen(tmp_path: Path) -> Iterator[Daemon]:
    # A client that reads nothing for 2 s is dropped (the default is 60 s); a worker stream
    # that makes no progress for 1 s is cut (120 s).
    yield from running_queen(rbee_env(tmp_path, RBEE_QUEEN_SEND_TIMEOUT="2",
                                      RBEE_QUEEN_WORKER_IDLE_TIMEOUT="1"))


def _active(queen: Daemon) -> int:
    queues = httpx.get(f"{queen.url}/v1/scheduler").json()["queues"]
    return int(queues.get("rbee-fake", {}).get("active", 0))


def _wait(check: object, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(what)


@pytest.mark.parametrize(("path", "request_body"), [
    ("/v1/responses", {"input": "flood", "max_output_tokens": 1_000_000}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "flood"}],
                              "max_tokens": 1_000_000}),
])
def test_a_client_that_stops_reading_gives_the_worker_back(
        queen: Daemon, path: str, request_body: dict[str, object]) -> None:
    warm = httpx.post(f"{queen.url}/v1/responses", json={
        "model": "rbee-fake", "input": "hi", "max_output_tokens": 2}, timeout=60)
    assert warm.status_code == 200, warm.text
    body = json.dumps({"model": "rbee-fake", "stream": True, **request_body}).encode()
    url = urlsplit(queen.url)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
    client.connect((url.hostname or "127.0.0.1", url.port or 80))
    try:
        client.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Type: application/json\r\n"
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        # It runs (the slot is taken), then fills every buffer on the way and stalls: the
        # client reads nothing and does not hang up.
        _wait(lambda: _active(queen) == 1, 30, "the stream never started")
        # The connection is dropped although the client never hung up: the slot comes back
        # and the next request is served.
        _wait(lambda: _active(queen) == 0, 20, "the stalled stream kept its slot")
        nxt = httpx.post(f"{queen.url}/v1/responses", json={
            "model": "rbee-fake", "input": "next", "max_output_tokens": 2}, timeout=30)
        assert nxt.status_code == 200, nxt.text
    finally:
        client.close()
