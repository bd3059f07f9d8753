"""Package boundaries the architecture relies on, checked on the source (import-linter style)."""

from __future__ import annotations

import ast
from pathlib import Path

import rbee
import rbee.client

SRC = Path(rbee.__file__).parent

FORBIDDEN = {
    # The scheduler is pure: decisions over a frozen snapshot, no I/O, no event loop.
    "scheduler": ("rbee.queen", "rbee.hive", "rbee.worker", "rbee.storage", "httpx", "asyncio",
                  "fastapi", "sqlite3"),
    # Domain vocabulary and wire schemas carry no behaviour and no framework.
    "core": ("rbee.queen", "rbee.hive", "rbee.worker", "fastapi", "httpx"),
    "api": ("rbee.queen", "rbee.hive", "rbee.worker", "fastapi", "httpx"),
    # The hive never reaches into the queen; the CLI only talks HTTP (no daemon internals
    # beyond the queen's settings, which say where the queen lives).
    "hive": ("rbee.queen", "rbee.cli"),
    "worker": ("rbee.queen", "rbee.hive", "rbee.cli"),
    # Traces are shared by the three daemons: they know none of them.
    "tracing": ("rbee.queen", "rbee.hive", "rbee.worker", "rbee.cli"),
    "cli": ("rbee.queen.app", "rbee.queen.services", "rbee.queen.jobs", "rbee.hive",
            "rbee.worker", "rbee.storage"),
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


# Exceptions, each narrow: `rbee queen reset-db` moves a damaged queen.db aside while no queen
# runs, so the CLI may use the state directory's file operations (no SQLite in them).
ALLOWED = frozenset({"rbee.storage.files"})


def test_package_boundaries() -> None:
    violations = []
    for package, banned in FORBIDDEN.items():
        for path in (SRC / package).rglob("*.py"):
            for name in _imports(path) - ALLOWED:
                if any(name == b or name.startswith(b + ".") for b in banned):
                    violations.append(f"{path.relative_to(SRC)} imports {name}")
    assert violations == []


def test_client_public_api() -> None:
    assert rbee.client.__all__ == sorted(rbee.client.__all__)
    for name in rbee.client.__all__:
        assert getattr(rbee.client, name).__module__.startswith("rbee.client")
