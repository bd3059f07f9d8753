from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemons import Daemon, rbee_env, running_queen


@pytest.fixture
def slow_env(tmp_path: Path) -> dict[str, str]:
    """Fake workers that take 20 ms per token: long enough to cancel mid-generation."""
    return rbee_env(tmp_path, RBEE_WORKER_FAKE_TOKENS_PER_SECOND="50")


@pytest.fixture
def slow_queen(slow_env: dict[str, str]) -> Iterator[Daemon]:
    yield from running_queen(slow_env)


@pytest.fixture
def http(shared_queen: Daemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_queen.url, timeout=60) as client:
        yield client
