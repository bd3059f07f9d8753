"""The audit chain in SQLite: triggers, tampering named, archival, erasure, restart."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from rbee.core.audit_chain import (
    GENESIS,
    Entry,
    SealKey,
    entry_hash,
    main,
    read_lines,
    verify_export,
)
from rbee.core.clock import FakeClock
from rbee.queen.actor import ANONYMOUS, Actor
from rbee.queen.audit import AuditLog, Person, seal_key
from rbee.storage.audit import AuditStore, Filters
from rbee.storage.db import connect

ALICE = Actor(tenant_id="acme", user_id="alice@example.com", key_fingerprint="sha256:abc123",
              role="user", client_ip="203.0.113.7")
YEAR = 365.25 * 86400


def audit_log(path: Path, clock: FakeClock | None = None) -> AuditLog:
    return AuditLog(AuditStore(connect(path)), clock or FakeClock(),
                    archive_dir=path.parent / "archive")


def fill(log: AuditLog, n: int, actor: Actor = ANONYMOUS) -> None:
    for i in range(n):
        log.record("inference", actor=actor, subject="rbee-fake", outcome="ok",
                   details={"i": i, "duration_ms": 1.5})
    log.flush_now()


def raw(path: Path) -> sqlite3.Connection:
    """What an attacker with the file can do: plain sqlite3, triggers dropped."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    return conn


async def test_a_fresh_chain_verifies_and_links_from_genesis(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 5)
    verdict = await log.verify()
    assert verdict.ok and verdict.entries == 5 and verdict.head_seq == 5
    [first] = (await log.page(Filters(limit=1)))
    assert first[0].prev == GENESIS and first[0].seq == 1


def test_triggers_refuse_update_and_delete_through_sql(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 2)
    conn = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="cannot be changed"):
        conn.execute("UPDATE audit_log SET outcome='error' WHERE seq=1")
    with pytest.raises(sqlite3.IntegrityError, match="only through archival"):
        conn.execute("DELETE FROM audit_log WHERE seq=2")
    assert conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 2


async def test_an_edited_row_is_named(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 6)
    raw(tmp_path / "q.db").execute(
        "UPDATE audit_log SET details='{\"i\":99,\"duration_ms\":1.5}' WHERE seq=4")
    verdict = await log.verify()
    assert not verdict.ok and verdict.problem is not None
    assert (verdict.problem.kind, verdict.problem.seq) == ("edited", 4)
    assert verdict.head_seq == 3  # everything before it still holds


async def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 4)
    conn = raw(tmp_path / "q.db")
    conn.execute("UPDATE audit_log SET outcome='error', hash=? WHERE seq=2", ("f" * 64,))
    verdict = await log.verify()
    assert verdict.problem is not None and verdict.problem.seq == 2  # its own hash


async def test_a_deleted_row_is_named_as_a_gap(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 6)
    raw(tmp_path / "q.db").execute("DELETE FROM audit_log WHERE seq IN (3, 4)")
    verdict = await log.verify()
    assert verdict.problem is not None and verdict.problem.kind == "missing"
    assert verdict.problem.seq == 3 and "entries 3..4 missing after entry 2" in \
        verdict.problem.message


async def test_swapped_rows_are_named(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 4)
    conn = raw(tmp_path / "q.db")
    rows = {r[0]: r[1:] for r in conn.execute("SELECT * FROM audit_log")}
    conn.execute("DELETE FROM audit_log WHERE seq IN (2, 3)")
    for seq, other in ((2, 3), (3, 2)):  # each row's content under the other's number
        conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                     (seq, *rows[other]))
    verdict = await log.verify()
    assert verdict.problem is not None and verdict.problem.seq == 2


async def test_a_truncated_tail_is_caught_by_the_head_this_queen_wrote(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 5)
    raw(tmp_path / "q.db").execute("DELETE FROM audit_log WHERE seq = 5")
    verdict = await log.verify()
    assert verdict.problem is not None
    assert (verdict.problem.kind, verdict.problem.seq) == ("truncated", 5)


async def test_export_verifies_offline_and_agrees_with_verify(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 7, ALICE)
    lines = [line async for line in log.export()]
    path = tmp_path / "export.jsonl"
    path.write_text("".join(lines))
    offline, online = verify_export(read_lines(path)), await log.verify()
    assert offline.ok and online.ok
    assert (offline.head_seq, offline.head_hash) == (online.head_seq, online.head_hash)
    assert main([str(path)]) == 0
    # The same file, one entry edited: the offline verifier names the same entry verify does.
    text = path.read_text().splitlines(keepends=True)
    text[3] = text[3].replace('"outcome":"ok"', '"outcome":"error"')
    path.write_text("".join(text))
    broken = verify_export(read_lines(path))
    assert broken.problem is not None and (broken.problem.kind, broken.problem.seq) == \
        ("edited", 3)
    assert main([str(path)]) == 1
    # A dropped last line: the header's head says the export was cut short.
    path.write_text("".join("".join(lines).splitlines(keepends=True)[:-1]))
    cut = verify_export(read_lines(path))
    assert cut.problem is not None and cut.problem.kind == "truncated"


@pytest.mark.parametrize("garbage", ["", "not json\n", '{"format": "other"}\n'])
def test_a_file_that_is_not_an_export_is_refused(garbage: str) -> None:
    verdict = verify_export(iter([garbage] if garbage else []))
    assert verdict.problem is not None and verdict.problem.kind == "malformed"


async def test_archival_moves_old_entries_and_the_chain_continues(tmp_path: Path) -> None:
    clock = FakeClock()
    log = audit_log(tmp_path / "q.db", clock)
    fill(log, 4)
    clock.advance(8 * YEAR)
    fill(log, 3)
    [mark] = await log.archive_due()
    assert (mark.first_seq, mark.through_seq) == (1, 4)
    archive = tmp_path / "archive" / mark.file
    assert verify_export(read_lines(archive)).ok
    [first] = await log.page(Filters(limit=1))
    assert first[0].seq == 5 and first[0].prev == mark.last_hash  # the chain continues
    assert (await log.verify()).ok
    full = await log.verify(archives=True)
    assert full.ok and full.entries == 8 and full.archives == [mark.file]  # + the archive entry
    assert main([str(archive)]) == 0
    conn = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="cannot be deleted"):
        conn.execute("DELETE FROM audit_archives")
    with pytest.raises(sqlite3.IntegrityError, match="cannot be changed"):
        conn.execute("UPDATE audit_archives SET last_hash='x'")
    with pytest.raises(sqlite3.IntegrityError, match="only through archival"):
        conn.execute("DELETE FROM audit_log WHERE seq = 5")  # live: not archived
    archive.unlink()
    missing = await log.verify(archives=True)
    assert missing.problem is not None and missing.problem.kind == "archive_missing"
    assert (await log.verify()).ok  # the live chain alone still holds


async def test_erasure_unlinks_a_person_and_the_chain_still_verifies(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 3, ALICE)
    log.record("admin.key.revoke", actor=Actor(role="admin"),
               subject=Person("alice@example.com"), outcome="ok")
    fill(log, 2, Actor(user_id="bob"))
    about = await log.entries_about("alice@example.com")
    assert len(about) == 4 and about[0]["personal"][0]["client_ip"] == "203.0.113.7"
    receipt = await log.erase_subject("alice@example.com", actor=Actor(role="admin"))
    assert receipt["entries_unlinked"] == 4 and receipt["personal_rows_deleted"] == 4
    assert await log.entries_about("alice@example.com") == []
    assert (await log.verify()).ok
    conn = sqlite3.connect(tmp_path / "q.db")
    dump = "\n".join(conn.iterdump()).encode()
    for personal in (b"alice@example.com", b"203.0.113.7", b"sha256:abc123"):
        assert personal not in dump
    assert b"bob" in dump  # others keep theirs
    erased = [e for e, _ in await log.page(Filters(action="gdpr."))]
    assert erased[0].details["entries_unlinked"] == 4


async def test_unknown_person_erasure_says_there_was_nothing(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    receipt = await log.erase_subject("nobody")
    assert receipt["had_data"] is False and receipt["entries_unlinked"] == 0


async def test_the_chain_never_holds_personal_fields_in_clear(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 1, ALICE)
    [(entry, clear)] = await log.page(Filters())
    assert entry.tenant == "acme" and entry.actor["role"] == "user"
    assert entry.actor_ref and entry.actor_ref.startswith("pn:")
    assert all(v.startswith("pn:") for k, v in entry.actor.items() if k != "role")
    assert clear == [{"role": "actor", "user_id": "alice@example.com",
                      "client_ip": "203.0.113.7", "key_fingerprint": "sha256:abc123"}]


async def test_filters_and_cursor(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 3)
    log.admin_change("script.save", subject="fair", outcome="ok")
    log.auth_failure("invalid key", path="/v1/models")
    page = await log.page(Filters(action="admin."))
    assert [e.subject for e, _ in page] == ["fair"]
    assert [e.seq for e, _ in await log.page(Filters(after=2, limit=2))] == [3, 4]
    assert [e.action for e, _ in await log.page(Filters(outcome="denied"))] == ["auth.failure"]


async def test_a_restarted_queen_continues_the_chain(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    fill(log, 3)
    await log.close()
    again = audit_log(tmp_path / "q.db")
    fill(again, 2)
    verdict = await again.verify()
    assert verdict.ok and verdict.entries == 5


def test_values_json_cannot_hold_are_named_not_lost(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")
    log.record("x", outcome="ok", details={"bad": float("nan")})
    log.flush_now()
    conn = sqlite3.connect(tmp_path / "q.db")
    [details] = conn.execute("SELECT details FROM audit_log").fetchone()
    assert "unrecorded_details" in details


HOSTILE = ["'; DROP TABLE audit_log; --", "%", "_", "\x00", "ü" * 5000, "pn:" + "0" * 32]


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_names_are_data_never_sql(tmp_path: Path, name: str) -> None:
    log = audit_log(tmp_path / "q.db")
    log.record("admin.script.save", actor=Actor(user_id=name), subject=Person(name),
               outcome="ok", details={name: name})
    fill(log, 1)
    assert len(await log.page(Filters(subject=name))) == 1
    assert len(await log.page(Filters(action=name, outcome=name, tenant=name))) == 0
    assert len(await log.entries_about(name)) == 1
    receipt = await log.erase_subject(name)
    assert receipt["entries_unlinked"] == 1
    assert (await log.verify()).ok


def sealed_log(path: Path, key_file: Path, clock: FakeClock | None = None) -> AuditLog:
    store = AuditStore(connect(path))
    store.key = seal_key(key_file, next_seq=lambda: store.head()[0] + 1)
    return AuditLog(store, clock or FakeClock(), archive_dir=path.parent / "archive")


def rewrite_from(conn: sqlite3.Connection, seq: int) -> None:
    """The attack a bare hash chain cannot see: edit entry `seq`, then recompute its hash
    and every later one, each linked to the one before (a seal it cannot recompute)."""
    columns = "seq, at, action, outcome, tenant, actor_ref, actor, subject, details, prev, hash"
    rows = conn.execute(f"SELECT {columns} FROM audit_log ORDER BY seq").fetchall()
    prev = next(r[10] for r in rows if r[0] == seq - 1) if seq > 1 else GENESIS
    for r in rows:
        if r[0] < seq:
            continue
        entry = Entry(seq=r[0], at=r[1], action=r[2],
                      outcome="error" if r[0] == seq else r[3], tenant=r[4], actor_ref=r[5],
                      actor=json.loads(r[6]), subject=r[7], details=json.loads(r[8]),
                      prev=prev)
        prev = entry_hash(entry)
        conn.execute("UPDATE audit_log SET outcome=?, prev=?, hash=? WHERE seq=?",
                     (entry.outcome, entry.prev, prev, entry.seq))


async def test_a_chain_rewritten_without_the_key_is_named_forged(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "audit-seal.key"
    log = sealed_log(tmp_path / "q.db", key_file)
    fill(log, 6, ALICE)
    assert (await log.verify()).ok
    assert key_file.stat().st_mode & 0o777 == 0o600
    lines = [line async for line in log.export()]
    await log.close()
    rewrite_from(raw(tmp_path / "q.db"), 3)

    # The hashes and links all hold again: only the seals tell.
    unkeyed = await audit_log(tmp_path / "q.db").verify()
    assert unkeyed.ok
    restarted = sealed_log(tmp_path / "q.db", key_file)  # the queen after a restart
    verdict = await restarted.verify()
    assert verdict.problem is not None and (verdict.problem.kind, verdict.problem.seq) == \
        ("forged", 3)
    assert "without the key" in verdict.problem.message
    # Offline: an export checks without the key, and its seals with it.
    export = tmp_path / "export.jsonl"
    export.write_text("".join(lines))
    assert main([str(export)]) == 0
    assert main(["--key", str(key_file), str(export)]) == 0
    forged = [line async for line in restarted.export()]
    export.write_text("".join(forged))
    assert main([str(export)]) == 0  # a rewritten chain is a valid bare chain...
    assert main(["--key", str(key_file), str(export)]) == 1  # ...but not a sealed one


async def test_entries_from_before_the_key_are_checked_by_hash_alone(tmp_path: Path) -> None:
    log = audit_log(tmp_path / "q.db")  # an older queen: no key
    fill(log, 3)
    await log.close()
    key_file = tmp_path / "audit-seal.key"
    sealed = sealed_log(tmp_path / "q.db", key_file)
    fill(sealed, 2)
    assert SealKey.from_bytes(key_file.read_bytes()).sealed_from == 4
    verdict = await sealed.verify()
    assert verdict.ok and verdict.entries == 5
    # Stripping a later entry's seal is no way around it
    raw(tmp_path / "q.db").execute("UPDATE audit_log SET seal=NULL WHERE seq=5")
    stripped = await sealed_log(tmp_path / "q.db", key_file).verify()
    assert stripped.problem is not None and (stripped.problem.kind, stripped.problem.seq) \
        == ("forged", 5)
