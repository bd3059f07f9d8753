"""The queen's keep-alive pool forgets a worker address once it holds no connection for it
(workers come and go on fresh ports for months)."""

from __future__ import annotations

from typing import Any, cast

from rbee.queen.transport_httptools import _Connection, _Pool


class Conn:
    def __init__(self) -> None:
        self.closed = False
        self.idle_since = 0.0

    def idle(self) -> None:
        import time

        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.closed = True


def test_stale_connections_of_a_gone_worker_leave_no_entry() -> None:
    pool = _Pool(max_idle=4, keepalive=-1.0)  # every idle connection is already stale
    address: Any = ("127.0.0.1", 40001)
    conn = Conn()
    pool.put(address, cast(_Connection, conn))
    assert pool.take(address) is None and conn.closed
    assert pool._idle == {}


def test_a_fresh_connection_is_reused_and_the_last_one_taken_leaves_no_entry() -> None:
    pool = _Pool(max_idle=4, keepalive=60.0)
    address: Any = ("127.0.0.1", 40002)
    conn = Conn()
    pool.put(address, cast(_Connection, conn))
    assert pool.take(address) is conn and not conn.closed
    assert pool.take(address) is None and pool._idle == {}
