"""The queen's start-up check of its database: one line, naming the file and the way out."""

from __future__ import annotations

from pathlib import Path

import pytest

from rbee.queen.server import check_database
from rbee.queen.settings import QueenSettings


def test_a_damaged_database_exits_with_the_reset_command_for_that_state_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RBEE_QUEEN_STATE_DIR", raising=False)
    state = tmp_path / "my state"
    state.mkdir()
    (state / "queen.db").write_bytes(b"\0" * 4096)
    with pytest.raises(SystemExit) as caught:
        check_database(QueenSettings(state_dir=state))
    assert caught.value.code == (
        f"queen-rbee: {state / 'queen.db'} is damaged (file is not a database); move it aside "
        f"with: rbee queen reset-db --state-dir '{state}'")


def test_a_newer_schema_is_named_without_suggesting_to_throw_it_away(tmp_path: Path) -> None:
    import sqlite3

    from rbee.storage.db import MIGRATIONS, connect

    connect(tmp_path / "queen.db").close()
    with sqlite3.connect(tmp_path / "queen.db") as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.close()
    with pytest.raises(SystemExit) as caught:
        check_database(QueenSettings(state_dir=tmp_path))
    assert "written by a newer rbee" in str(caught.value.code)
    assert "reset-db" not in str(caught.value.code)


def test_a_healthy_or_missing_database_passes(tmp_path: Path) -> None:
    check_database(QueenSettings(state_dir=tmp_path))  # created
    check_database(QueenSettings(state_dir=tmp_path))  # reopened
    assert (tmp_path / "queen.db").stat().st_size > 0
