"""The audit log's tables: an append-only hash chain, its archive marks, and personal data
kept beside the chain so that it can be erased without breaking it.

Tables (the fifth migration in `storage/db.py`):

- `audit_log`: the chain (see `audit_chain`). Triggers refuse every UPDATE, and every
  DELETE of an entry that no archive file holds yet. That is the one way out of the table:
  archival writes the entries to a file, inserts the archive's mark (`through_seq`, its last
  hash, the file's SHA-256), and only then deletes them — so nothing leaves the database
  unless a mark says where it went, and the first live entry links to that mark's hash.
  An attacker with the file can drop triggers; the chain, not the triggers, catches that.
- `audit_archives`: the marks; insert-only (triggers refuse UPDATE and DELETE).
- `audit_secrets` and `audit_personal`: NOT chained, deletable. Personal fields (the acting
  user's id, their key's fingerprint, a client IP, a person an entry is about) never enter
  the chain in clear: the chain holds HMAC-SHA256 pseudonyms under a random secret per person
  (crypto-shredding), and the clear values sit in `audit_personal` for people with the right
  to read the log. Erasing a person deletes their secret and their clear rows: the chained
  pseudonyms stay (so every hash still verifies) but nobody can link them to the person any
  more — not even by guessing ids, which a plain hash of the id would allow. Archive files
  hold only chained entries, so they never need rewriting for an erasure.

Chosen over the alternatives: hashing the clear values into the chain and blanking them
later breaks verification (or needs per-field commitments and a second verifier); a
trigger that lets some UPDATEs through is a hole the chain then has to explain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rbee.core.audit_chain import GENESIS, Entry, SealKey, encode, header, sealed
from rbee.storage.db import Database

_SELECT = ("SELECT seq, at, action, outcome, tenant, actor_ref, actor, subject, details, prev, "
           "hash, seal FROM audit_log ")
_INSERT = ("INSERT INTO audit_log(seq, at, action, outcome, tenant, actor_ref, actor, subject, "
           "details, prev, hash, seal) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
# Every filter in one fixed statement ("? IS NULL OR …"): no SQL is ever assembled.
_PAGE = _SELECT + (
    "WHERE seq > ? AND (? IS NULL OR (action >= ? AND action < ?)) "
    "AND (? IS NULL OR outcome = ?) AND (? IS NULL OR tenant = ?) "
    "AND (? IS NULL OR subject = ? OR subject = ? OR actor_ref = ?) "
    "AND (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?) ORDER BY seq LIMIT ?")
CHUNK = 1000  # rows read per lock hold while walking the chain: other stores keep moving


@dataclass(slots=True)
class Pending:
    """An entry as recorded, before it is pseudonymised and chained.

    `personal` fields belong to `person` (the actor) and enter the chain only as pseudonyms;
    `plain` fields enter as they are. `subject_person` makes the subject a person too.
    """

    at: float
    action: str
    outcome: str
    tenant: str | None = None
    person: str | None = None
    personal: dict[str, str] = field(default_factory=dict)
    plain: dict[str, str] = field(default_factory=dict)
    subject: str | None = None
    subject_person: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArchiveMark:
    first_seq: int
    through_seq: int
    last_hash: str
    file: str
    sha256: str
    archived_at: float


@dataclass(frozen=True)
class Erasure:
    """What erasing a person did (the receipt's content)."""

    entries_unlinked: int
    personal_rows_deleted: int
    had_data: bool


@dataclass(frozen=True)
class Filters:
    after: int = 0  # cursor: entries with a larger seq
    limit: int = 100
    action: str | None = None  # a prefix: "admin." matches every admin change
    outcome: str | None = None
    tenant: str | None = None
    subject: str | None = None
    since: float | None = None
    until: float | None = None


def pseudonym(secret: bytes, label: str, value: str) -> str:
    return "pn:" + hmac.digest(secret, f"{label}\0{value}".encode(), "sha256").hex()[:32]


class AuditStore:
    def __init__(self, db: Database, key: SealKey | None = None) -> None:
        self._db = db
        self.key = key  # seals every entry written (core.audit_chain)

    def append(self, batch: Sequence[Pending]) -> tuple[int, str]:
        """Chain and insert `batch` in one transaction; the new head (seq, hash)."""
        with self._db.transaction() as tx:
            seq, prev = _head(tx)
            secrets_: dict[str, bytes] = {}  # per batch: one lookup per person
            for item in batch:
                seq += 1
                entry, clear = _chained(tx, item, seq, prev, secrets_, self.key)
                tx.execute(_INSERT, _row(entry))
                tx.executemany("INSERT INTO audit_personal(seq, person, role, data) "
                               "VALUES (?,?,?,?)", clear)
                prev = entry.hash
            return seq, prev

    def head(self) -> tuple[int, str]:
        with self._db.transaction() as tx:
            return _head(tx)

    def start(self) -> tuple[int, str]:
        """Where the live chain starts: the seq after the newest archive, and its hash."""
        mark = self.marks()[-1:] or None
        return (mark[0].through_seq + 1, mark[0].last_hash) if mark else (1, GENESIS)

    def marks(self) -> list[ArchiveMark]:
        rows = self._db.query("SELECT first_seq, through_seq, last_hash, file, sha256, "
                              "archived_at FROM audit_archives ORDER BY through_seq")
        return [ArchiveMark(*r) for r in rows]

    def chunk(self, after: int, through: int | None = None) -> list[Entry]:
        """Up to CHUNK live entries after `after` (and up to `through`), in order."""
        end = through if through is not None else 2**62
        rows = self._db.query(_SELECT + "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                              (after, end, CHUNK))
        return [_entry(r) for r in rows]

    def walk(self, after: int = 0, through: int | None = None) -> Iterator[Entry]:
        """Every live entry after `after`, a chunk per lock hold (other stores keep moving)."""
        while found := self.chunk(after, through):
            yield from found
            after = found[-1].seq

    def page(self, f: Filters) -> list[Entry]:
        ref = self.person_ref(f.subject) or f.subject if f.subject is not None else None
        end = f.action + "\U0010ffff" if f.action else None  # `action` is a prefix
        args = (f.after, f.action, f.action, end, f.outcome, f.outcome, f.tenant, f.tenant,
                f.subject, f.subject, ref, ref, f.since, f.since, f.until, f.until, f.limit)
        return [_entry(r) for r in self._db.query(_PAGE, args)]

    def personal(self, seqs: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """The clear personal fields of these entries (gone for erased people)."""
        found: dict[int, list[dict[str, Any]]] = {}
        if not seqs:
            return found
        wanted = set(seqs)
        for seq, role, data in self._db.query(
                "SELECT seq, role, data FROM audit_personal WHERE seq BETWEEN ? AND ? "
                "ORDER BY rowid", (min(wanted), max(wanted))):
            if seq in wanted:
                found.setdefault(seq, []).append({"role": role, **json.loads(data)})
        return found

    def person_ref(self, person: str) -> str | None:
        row = self._db.query_one("SELECT secret FROM audit_secrets WHERE person = ?", (person,))
        return pseudonym(row[0], "person", person) if row else None

    def about(self, person: str) -> list[tuple[Entry, list[dict[str, Any]]]]:
        """Live entries that name `person` (as actor or subject), with their clear fields."""
        ref = self.person_ref(person)
        if ref is None:
            return []
        rows = self._db.query(_SELECT + "WHERE actor_ref = ? OR subject = ? ORDER BY seq",
                              (ref, ref))
        entries = [_entry(r) for r in rows]
        clear = self.personal([e.seq for e in entries])
        return [(e, clear.get(e.seq, [])) for e in entries]

    def erase(self, person: str) -> Erasure:
        """Crypto-shred `person`: their secret and clear rows go; chained entries stay."""
        with self._db.transaction() as tx:
            row = tx.execute("SELECT secret FROM audit_secrets WHERE person = ?",
                             (person,)).fetchone()
            linked = 0
            if row is not None:
                ref = pseudonym(row[0], "person", person)
                linked = tx.execute("SELECT COUNT(*) FROM audit_log WHERE actor_ref = ? OR "
                                    "subject = ?", (ref, ref)).fetchone()[0]
            deleted = tx.execute("DELETE FROM audit_personal WHERE person = ?",
                                 (person,)).rowcount
            tx.execute("DELETE FROM audit_secrets WHERE person = ?", (person,))
        return Erasure(linked, deleted, row is not None or deleted > 0)

    def archive(self, before: float, directory: Path, now: float,
                most: int = 100_000) -> ArchiveMark | None:
        """Move the oldest entries recorded before `before` into a gzip JSON-lines file.

        The file is complete on disk (written aside, fsynced, renamed) before the mark goes
        in and the rows come out, in one transaction: a crash leaves either the rows or the
        file and its mark, never neither. Only this method deletes rows, so they cannot
        change between the read and the delete.
        """
        first, prev = self.start()
        rows = self._db.query(_SELECT + "WHERE seq >= ? ORDER BY seq LIMIT ?", (first, most))
        entries = []
        for r in rows:  # a contiguous prefix: the chain must continue from the last one
            if r[1] >= before:
                break
            entries.append(_entry(r))
        if not entries:
            return None
        last = entries[-1]
        path = directory / f"audit-{entries[0].seq:012d}-{last.seq:012d}.jsonl.gz"
        digest = _write_archive(path, entries, prev)
        mark = ArchiveMark(entries[0].seq, last.seq, last.hash, path.name, digest, now)
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO audit_archives(first_seq, through_seq, last_hash, file, "
                       "sha256, archived_at) VALUES (?,?,?,?,?,?)",
                       (mark.first_seq, mark.through_seq, mark.last_hash, mark.file,
                        mark.sha256, mark.archived_at))
            tx.execute("DELETE FROM audit_log WHERE seq <= ?", (last.seq,))
        return mark


def _head(tx: Any) -> tuple[int, str]:
    row = tx.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:
        row = tx.execute("SELECT through_seq, last_hash FROM audit_archives "
                         "ORDER BY through_seq DESC LIMIT 1").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def _secret(tx: Any, person: str, known: dict[str, bytes]) -> bytes:
    if person in known:
        return known[person]
    known[person] = _stored_secret(tx, person)
    return known[person]


def _stored_secret(tx: Any, person: str) -> bytes:
    row = tx.execute("SELECT secret FROM audit_secrets WHERE person = ?", (person,)).fetchone()
    if row is not None:
        return bytes(row[0])
    secret = secrets.token_bytes(32)
    tx.execute("INSERT INTO audit_secrets(person, secret) VALUES (?, ?)", (person, secret))
    return secret


def _chained(tx: Any, item: Pending, seq: int, prev: str, known: dict[str, bytes],
             key: SealKey | None
             ) -> tuple[Entry, list[tuple[int, str, str, str]]]:
    actor: dict[str, Any] = dict(item.plain)
    clear: list[tuple[int, str, str, str]] = []
    actor_ref = subject = None
    if item.person is not None:
        secret = _secret(tx, item.person, known)
        actor_ref = pseudonym(secret, "person", item.person)
        actor.update({k: pseudonym(secret, k, v) for k, v in item.personal.items()})
        clear.append((seq, item.person, "actor", json.dumps(item.personal)))
    subject = item.subject
    if item.subject_person is not None:
        subject = pseudonym(_secret(tx, item.subject_person, known), "person", item.subject_person)
        clear.append((seq, item.subject_person, "subject",
                      json.dumps({"subject": item.subject_person})))
    entry = sealed(Entry(seq=seq, at=item.at, action=item.action, outcome=item.outcome,
                         tenant=item.tenant, actor_ref=actor_ref, actor=actor,
                         subject=subject, details=_plain_json(item.details), prev=prev),
                   key)
    return entry, clear


def _plain_json(details: dict[str, Any]) -> dict[str, Any]:
    """`details` as JSON reads it back (tuples become lists, keys strings), so the hash
    written is the hash verified; a value JSON cannot hold is named, not lost silently."""
    try:
        found: dict[str, Any] = json.loads(json.dumps(details, allow_nan=False, default=str))
    except (TypeError, ValueError) as exc:
        return {"unrecorded_details": f"not JSON: {exc}"}
    return found


def _row(e: Entry) -> tuple[Any, ...]:
    return (e.seq, e.at, e.action, e.outcome, e.tenant, e.actor_ref, json.dumps(e.actor),
            e.subject, json.dumps(e.details), e.prev, e.hash, e.seal)


def _entry(r: Sequence[Any]) -> Entry:
    return Entry(seq=r[0], at=r[1], action=r[2], outcome=r[3], tenant=r[4], actor_ref=r[5],
                 actor=json.loads(r[6]), subject=r[7], details=json.loads(r[8]), prev=r[9],
                 hash=r[10], seal=r[11])


def _write_archive(path: Path, entries: list[Entry], prev: str) -> str:
    """Write the file atomically; its SHA-256."""
    import gzip

    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.partial")
    last = entries[-1]
    with open(scratch, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(encode(header(entries[0].seq, prev, last.seq, last.hash)).encode())
            for e in entries:
                gz.write(encode(e.to_json()).encode())
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(scratch, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()
