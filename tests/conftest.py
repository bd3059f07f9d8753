from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import Daemon, rbee_env, start_queen


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return rbee_env(tmp_path)


@pytest.fixture
def queen(env: dict[str, str]) -> Iterator[Daemon]:
    """A real queen with its local hive; asserts nothing it started outlives it."""
    daemon = start_queen(env)
    try:
        yield daemon
    finally:
        daemon.stop()
        leftovers = daemon.leftovers()
        assert not leftovers, f"orphan processes after queen stop: {leftovers}"
