"""Script versions: every save is one, a rollback puts an earlier one back in force, and a
database from before versions (migration 9) keeps its scripts as their version 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rbee.storage.db import MIGRATIONS, connect, migrate
from rbee.storage.scripts import KEEP_VERSIONS, ScriptStore


def test_each_save_is_a_version_with_when_and_who(tmp_path: Path) -> None:
    store = ScriptStore(connect(tmp_path / "q.db"))
    assert store.save("fair", "-- one", 10.0, "key-a") == 1
    assert store.save("fair", "-- two", 20.0, "key-b") == 2
    assert store.save("other", "-- x", 30.0, "bootstrap") == 1  # numbered per script
    row = store.get("fair")
    assert row is not None and (row.source, row.version, row.updated_at) == ("-- two", 2, 20.0)
    assert [(v.version, v.source, v.saved_at, v.saved_by) for v in store.history("fair")] == [
        (2, "-- two", 20.0, "key-b"), (1, "-- one", 10.0, "key-a")]


def test_restore_puts_an_earlier_version_in_force_and_keeps_the_later_ones(
        tmp_path: Path) -> None:
    store = ScriptStore(connect(tmp_path / "q.db"))
    store.save("a", "-- a1", 1.0, "k")
    store.save("b", "-- b1", 2.0, "k")
    store.save("b", "-- b2", 3.0, "k")
    store.activate("a")
    assert store.restore("b", 1, 4.0)
    active = store.active()
    assert active is not None and (active.name, active.source, active.version) == ("b", "-- b1", 1)
    assert [v.version for v in store.history("b")] == [2, 1]  # nothing deleted: undoable
    assert store.restore("b", 2, 5.0) and store.get("b").source == "-- b2"  # type: ignore[union-attr]
    assert store.save("b", "-- b3", 6.0, "k") == 3  # numbering goes on after a rollback
    assert not store.restore("b", 9, 7.0) and not store.restore("nope", 1, 7.0)
    assert store.get("b").version == 3  # type: ignore[union-attr]


def test_old_versions_are_dropped_past_the_limit_and_deleted_with_the_script(
        tmp_path: Path) -> None:
    store = ScriptStore(connect(tmp_path / "q.db"))
    for i in range(KEEP_VERSIONS + 3):
        store.save("s", f"-- {i}", float(i), "k")
    kept = [v.version for v in store.history("s")]
    assert len(kept) == KEEP_VERSIONS and kept[0] == KEEP_VERSIONS + 3 and kept[-1] == 4
    assert store.version("s", 3) is None and store.version("s", 4) is not None
    assert store.delete("s") and store.history("s") == [] and store.get("s") is None
    assert store.save("s", "-- again", 99.0, "k") == 1  # a new script of the same name


def test_migration_9_keeps_older_scripts_as_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:8], start=1):
        conn.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")
    conn.execute("INSERT INTO scripts(name, source, active, updated_at) "
                 "VALUES ('legacy', '-- old', 1, 5.0)")
    migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()
    store = ScriptStore(connect(path))
    row = store.active()
    assert row is not None and (row.name, row.version) == ("legacy", 1)
    assert [(v.version, v.source, v.saved_at, v.saved_by) for v in store.history("legacy")] == [
        (1, "-- old", 5.0, "unknown")]
    assert store.save("legacy", "-- new", 6.0, "k") == 2
