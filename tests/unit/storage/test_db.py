"""The queen's one Database: stores never share a transaction; damaged files are refused."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from rbee.api.jobs import JobEvent
from rbee.storage.db import MIGRATIONS, DatabaseUnusable, NestedUse, connect
from rbee.storage.files import move_aside
from rbee.storage.hives import HiveRow, HiveStore
from rbee.storage.jobs import JobStore
from rbee.storage.scripts import ScriptStore

HIVE = HiveRow("gpu", "token", "worker-token", {"version": "1"})


def test_a_hive_write_waits_for_a_jobs_open_transaction(tmp_path: Path) -> None:
    """A hive saved while a job's transaction is open must not join it (and be rolled back
    with it): it waits, then commits on its own."""
    db = connect(tmp_path / "queen.db")
    jobs, hives = JobStore(db), HiveStore(db)
    jobs.create("job-1", "infer", {}, 1.0)
    in_transaction, hive_saved = threading.Event(), threading.Event()

    def save_hive() -> None:
        in_transaction.wait(5)
        hives.save(HIVE, 2.0)
        hive_saved.set()

    saver = threading.Thread(target=save_hive)
    saver.start()
    with pytest.raises(RuntimeError, match="job failed"), db.transaction() as tx:
        tx.execute("UPDATE jobs SET state='running' WHERE id='job-1'")
        in_transaction.set()
        # The hive's write may not happen while this transaction is open.
        assert not hive_saved.wait(0.3)
        raise RuntimeError("job failed")  # rolls the job's transaction back
    saver.join(5)
    assert hive_saved.is_set()
    assert HiveStore(connect(tmp_path / "queen.db")).get("gpu") == HIVE  # committed, kept
    assert jobs.get("job-1").state == "queued"  # type: ignore[union-attr]


def test_stores_used_from_threads_never_share_a_transaction(tmp_path: Path) -> None:
    """Job transactions, script activations and hive writes from several threads at once:
    every transaction commits whole, none fails for another's (one lock for all)."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so overlaps happen if they can
    try:
        db = connect(tmp_path / "queen.db")
        jobs, hives, scripts = JobStore(db), HiveStore(db), ScriptStore(db)
        scripts.save("a", "return 1", 1.0)
        errors: list[BaseException] = []

        def run(work: list[object]) -> None:
            try:
                for step in work:
                    step()  # type: ignore[operator]
            except BaseException as exc:
                errors.append(exc)

        def finish(i: int) -> object:
            events = [JobEvent(seq=n, event="token", data={"t": "x", "i": n}) for n in range(20)]
            return lambda: (jobs.create(f"job-{i}", "infer", {}, 1.0),
                            jobs.finish(f"job-{i}", "done", 2.0, {"i": i}, None, events))

        threads = [
            threading.Thread(target=run, args=([finish(i) for i in range(150)],)),
            threading.Thread(target=run, args=([lambda: scripts.activate("a")] * 300,)),
            threading.Thread(target=run, args=([lambda: hives.save(HIVE, 1.0)] * 300,)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(switch)
    assert errors == []
    assert len(jobs.recent(1000, "done")) == 150
    assert all(len(jobs.events(f"job-{i}")) == 20 for i in range(150))


def test_using_the_database_inside_its_own_transaction_raises_instead_of_deadlocking(
        tmp_path: Path) -> None:
    db = connect(tmp_path / "queen.db")
    with pytest.raises(NestedUse), db.transaction():
        HiveStore(db).all()
    assert HiveStore(db).all() == []  # the lock was released


def test_a_new_database_is_created_whole(tmp_path: Path) -> None:
    path = tmp_path / "state" / "queen.db"
    connect(path).close()
    assert path.stat().st_size > 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["queen.db"]  # no scratch left
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_history_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "queen.db"
    db = connect(path)
    JobStore(db).create("job-1", "status", {}, 1.0)
    db.close()
    assert JobStore(connect(path, verify=True)).get("job-1") is not None


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 100)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def damage_pages(path: Path) -> None:
    """A real queen.db whose `jobs` b-tree page has a bad header (opens, then fails)."""
    db = connect(path)
    store = JobStore(db)
    for i in range(300):
        store.create(f"job-{i}", "infer", {"prompt": "x" * 100}, float(i))
    db.close()
    with sqlite3.connect(path) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='jobs'").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    offset = (root - 1) * page_size
    data[offset + 3:offset + 5] = b"\xff\xff"  # the page's cell count
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("spoil", "reason"), [(_garbage, "file is not a database"),
                                               (_empty, "the file is empty"),
                                               (damage_pages, "Page 2")])
def test_a_damaged_file_is_refused_and_left_as_it_was(tmp_path: Path, spoil: object,
                                                      reason: str) -> None:
    path = tmp_path / "queen.db"
    spoil(path)  # type: ignore[operator]
    before = path.read_bytes()
    with pytest.raises(DatabaseUnusable) as caught:
        connect(path, verify=True)
    assert caught.value.damaged
    assert caught.value.message.startswith(f"{path} is damaged (")
    assert reason in caught.value.message and "\n" not in caught.value.message
    assert path.read_bytes() == before  # never recreated, never "repaired" in place


def test_a_database_from_a_newer_rbee_is_refused_but_not_called_damaged(tmp_path: Path) -> None:
    path = tmp_path / "queen.db"
    connect(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(DatabaseUnusable, match="newer rbee") as caught:
        connect(path)
    assert not caught.value.damaged


def test_move_aside_keeps_the_file_and_its_wal_and_a_new_start_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "queen.db"
    _garbage(path)
    wal = tmp_path / "queen.db-wal"
    wal.write_bytes(b"frames")
    moved = move_aside(path, now=time.mktime((2025, 1, 2, 3, 4, 5, 0, 0, -1)))
    assert moved == tmp_path / "queen.db.aside-20250102-030405"
    assert moved.read_bytes().startswith(b"this is not a database")
    assert (tmp_path / "queen.db.aside-20250102-030405-wal").read_bytes() == b"frames"
    assert not path.exists() and not wal.exists()
    assert JobStore(connect(path, verify=True)).recent() == []
    assert move_aside(tmp_path / "missing.db") is None
