from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rbee.client import QueenClient
from tests.support.daemons import Daemon, rbee_env, running_queen
from tests.support.hub import TINY_FILE, TINY_REPO
from tests.support.tiny_gguf import write_tiny_llama_gguf


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return rbee_env(tmp_path)


@pytest.fixture
def clients() -> Iterator[Callable[[str], QueenClient]]:
    """Make queen clients that are all closed at the end of the test."""
    made: list[QueenClient] = []

    def make(url: str) -> QueenClient:
        made.append(QueenClient(url))
        return made[-1]

    yield make
    for c in made:
        c.close()


@pytest.fixture
def queen(env: dict[str, str]) -> Iterator[Daemon]:
    """A real queen with its local hive; asserts nothing it started outlives it."""
    yield from running_queen(env)


@pytest.fixture(scope="module")
def shared_queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One queen for a module of tests that don't disturb each other."""
    yield from running_queen(rbee_env(tmp_path_factory.mktemp("rbee")))


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in hub's files: the tiny GGUF as tiny-org/tiny-llama:tiny.gguf."""
    root = tmp_path_factory.mktemp("hub")
    write_tiny_llama_gguf(root / TINY_REPO / TINY_FILE)
    return root
