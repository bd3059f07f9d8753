"""The dashboard's live stream (/ui/events) on real queen daemons, without a browser: a
tokenless loopback queen ignores a stale session cookie (left from when it had a token); a
queen with keys streams to a logged-in session and says so when the session ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemons import rbee_env, running_queen

pytestmark = pytest.mark.e2e

TOKEN = "dashboard-events-test-token"


def _events(http: httpx.Client, n: int, **headers: str) -> Iterator[str]:
    """The first `n` event names of the stream."""
    with http.stream("GET", "/ui/events", headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        seen = 0
        for line in r.iter_lines():
            if line.startswith("event: "):
                yield line[7:]
                seen += 1
                if seen == n:
                    return


def _queen(root: Path, **extra: str) -> Iterator[str]:
    env = rbee_env(root, RBEE_QUEEN_LOCAL_HIVE="false", **extra)
    for daemon in running_queen(env):
        yield daemon.url


def test_a_tokenless_queen_ignores_a_stale_session_cookie(tmp_path: Path) -> None:
    for url in _queen(tmp_path):
        with httpx.Client(base_url=url, timeout=30) as http:
            stale = {"Cookie": "rbee_session=left-from-when-this-queen-had-a-token"}
            assert list(_events(http, 1, **stale)) == ["cluster"]
            assert http.get("/ui/session", headers=stale).json()["role"] == "admin"


def test_a_session_streams_until_it_ends(tmp_path: Path) -> None:
    for url in _queen(tmp_path, RBEE_QUEEN_API_TOKEN=TOKEN):
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/ui/events").status_code == 401  # no key, no stream
            login = http.post("/ui/login", json={"api_key": TOKEN})
            assert login.status_code == 200, login.text
            assert list(_events(http, 1)) == ["cluster"]
            csrf = login.json()["csrf_token"]
            with http.stream("GET", "/ui/events") as r:
                lines = r.iter_lines()
                assert next(line for line in lines if line.startswith("event: ")) == \
                    "event: cluster"
                out = http.post("/ui/logout", headers={"X-CSRF-Token": csrf})
                assert out.status_code == 204
                # Within a tick the stream says the session ended, then ends.
                rest = [line for line in lines if line.startswith("event: ")]
                assert rest[-1] == "event: session_ended"
