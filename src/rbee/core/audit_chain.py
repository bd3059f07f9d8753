"""The audit log's hash chain: one entry's hash, a walk that names the first break, and the
offline verifier for exported (and archived) files.

Standard library only, on purpose: an auditor can check an export with this one file and
Python, without rbee, the queen or its database (`python -m rbee.core.audit_chain FILE`).

An entry's hash is SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8) of every
field but `hash` itself, `prev` included: changing, removing or reordering an entry breaks
the link to it. The first entry's `prev` is GENESIS (or, after archival, the last hash of
the newest archive file). A chain alone cannot tell a truncated tail from a shorter history:
that is what the chain head in an export (and the queen's own memory of its last write) is
for.

A hash chain alone proves nothing against someone who can write the database: they can edit
an entry and recompute every hash after it. So each entry also carries a **seal**:
HMAC-SHA256 of its hash under a key the queen keeps outside the database (`SealKey`, a file
of its own). Whoever rewrites the chain without that key cannot seal it: the walk names the
first entry whose seal does not match (`forged`). Hashes stay plain, so anyone can check an
export's chain without the key; the key holder (the operator, an auditor given a copy)
checks the seals too (`--key FILE`). Entries written before the key existed
(`sealed_from`) carry no seal.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import hmac
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

GENESIS = "0" * 64
FORMAT = "rbee-audit/1"
ProblemKind = Literal["edited", "missing", "out_of_order", "truncated", "malformed",
                      "archive_missing", "forged"]


@dataclass(frozen=True)
class Entry:
    """One chained entry, as stored: personal fields are pseudonyms already."""

    seq: int
    at: float
    action: str
    outcome: str
    tenant: str | None
    actor_ref: str | None  # pseudonym of the person who acted (None: no person)
    actor: dict[str, Any]  # the actor's other fields (key fingerprint or its pseudonym…)
    subject: str | None  # a thing's name, or a person's pseudonym
    details: dict[str, Any]
    prev: str
    hash: str = ""
    seal: str | None = None  # HMAC of `hash` under the queen's SealKey (not hashed itself)

    def body(self) -> dict[str, Any]:
        """Every field but the hash (shallow: canonical() serialises it right away)."""
        return {"seq": self.seq, "at": self.at, "action": self.action,
                "outcome": self.outcome, "tenant": self.tenant, "actor_ref": self.actor_ref,
                "actor": self.actor, "subject": self.subject, "details": self.details,
                "prev": self.prev}

    def to_json(self) -> dict[str, Any]:
        sealed_by = {"seal": self.seal} if self.seal is not None else {}
        return {**self.body(), "hash": self.hash, **sealed_by}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name != "seal"},
                   seal=data.get("seal"))


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def entry_hash(entry: Entry) -> str:
    return hashlib.sha256(canonical(entry.body())).hexdigest()


def sealed(entry: Entry, key: SealKey | None = None) -> Entry:
    """`entry` with its hash filled in, and its seal when there is a key."""
    digest = entry_hash(entry)
    return replace(entry, hash=digest, seal=key.seal(digest) if key is not None else None)


@dataclass(frozen=True)
class SealKey:
    """The queen's key for sealing entries, and the first entry it sealed."""

    key: bytes
    sealed_from: int

    def seal(self, digest: str) -> str:
        return hmac.new(self.key, digest.encode(), hashlib.sha256).hexdigest()

    def holds(self, entry: Entry) -> bool:
        if entry.seq < self.sealed_from:
            return True  # written before there was a key
        return entry.seal is not None and hmac.compare_digest(entry.seal,
                                                              self.seal(entry.hash))

    def to_bytes(self) -> bytes:
        return canonical({"key": self.key.hex(), "sealed_from": self.sealed_from})

    @classmethod
    def from_bytes(cls, raw: bytes) -> SealKey:
        data = json.loads(raw)
        return cls(bytes.fromhex(data["key"]), int(data["sealed_from"]))


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    seq: int  # the first entry that does not match (for a gap: the first one missing)
    message: str


@dataclass
class Verdict:
    """What a walk found: how far the chain holds, and the first entry that breaks it."""

    entries: int = 0
    first_seq: int | None = None
    head_seq: int = 0
    head_hash: str = GENESIS
    problem: Problem | None = None
    archives: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "first_seq": self.first_seq,
                "head": {"seq": self.head_seq, "hash": self.head_hash},
                "problem": asdict(self.problem) if self.problem else None,
                "archives": self.archives}


class Walk:
    """Feed entries in stored order; stops at the first one that breaks the chain."""

    def __init__(self, start_seq: int = 1, prev: str = GENESIS,
                 verdict: Verdict | None = None, key: SealKey | None = None) -> None:
        self.verdict = verdict or Verdict(head_seq=start_seq - 1, head_hash=prev)
        self.key = key  # None: the hashes and links only

    def feed(self, entry: Entry) -> bool:
        """False once the chain is broken (the verdict names where)."""
        v = self.verdict
        if v.problem is not None:
            return False
        expected = v.head_seq + 1
        if entry.seq > expected:
            v.problem = Problem("missing", expected, _gap(expected, entry.seq - 1, v.head_seq))
        elif entry.seq < expected:
            v.problem = Problem("out_of_order", entry.seq, f"entry {entry.seq} comes after "
                                f"entry {v.head_seq}: entries were reordered or inserted")
        elif entry_hash(entry) != entry.hash:
            v.problem = Problem("edited", entry.seq, f"entry {entry.seq} does not match its "
                                "hash: it was changed after it was written")
        elif entry.prev != v.head_hash:
            v.problem = Problem("out_of_order", entry.seq, f"entry {entry.seq} does not link "
                                f"to entry {v.head_seq}: an entry before it was replaced, "
                                "reordered or inserted")
        elif self.key is not None and not self.key.holds(entry):
            v.problem = Problem("forged", entry.seq, f"entry {entry.seq} is not sealed with "
                                "the queen's audit key: the chain was rewritten from here "
                                "(its hashes recomputed) by someone without the key")
        if v.problem is not None:
            return False
        v.entries += 1
        v.first_seq = entry.seq if v.first_seq is None else v.first_seq
        v.head_seq, v.head_hash = entry.seq, entry.hash
        return True

    def expect_head(self, seq: int, digest: str) -> Verdict:
        """The chain must end exactly at (seq, digest): a shorter one lost its tail."""
        v = self.verdict
        if v.problem is None and v.head_seq < seq:
            v.problem = Problem("truncated", v.head_seq + 1,
                                _gap(v.head_seq + 1, seq, v.head_seq) + " (at the end)")
        elif v.problem is None and (v.head_seq, v.head_hash) != (seq, digest):
            v.problem = Problem("edited", v.head_seq, f"the chain ends at entry {v.head_seq}, "
                                f"not at the recorded head {seq}")
        return v


def _gap(first: int, last: int, after: int) -> str:
    which = f"entry {first}" if first == last else f"entries {first}..{last}"
    return f"{which} missing after entry {after}: deleted"


# -- files: exports and archives share one format ------------------------------------------
# Line 1 is a header {"format", "first_seq", "prev", "head": {"seq", "hash"}}; every other
# line is one entry's JSON. `prev` is the hash the first entry links to.

def header(first_seq: int, prev: str, head_seq: int, head_hash: str,
           **extra: Any) -> dict[str, Any]:
    return {"format": FORMAT, "first_seq": first_seq, "prev": prev,
            "head": {"seq": head_seq, "hash": head_hash}, **extra}


def encode(data: dict[str, Any]) -> str:
    return canonical(data).decode() + "\n"


def read_lines(path: Path) -> Iterator[str]:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as packed:
            yield from packed
    else:
        with open(path, encoding="utf-8") as plain:
            yield from plain


def verify_export(lines: Iterable[str], walk: Walk | None = None,
                  key: SealKey | None = None) -> Verdict:
    """Check an exported or archived file on its own: every entry's hash, every link, and
    that the chain reaches the head its header names (and every seal, given `key`). `walk`
    continues a previous file."""
    it = iter(lines)
    try:
        head = json.loads(next(it))
        if head.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} file")
        start = int(head["first_seq"])
        # A file that continues an earlier one: its entries must link to that one's head.
        walk = walk or Walk(start, str(head["prev"]), key=key)
    except (StopIteration, ValueError, KeyError, TypeError) as exc:
        verdict = walk.verdict if walk else Verdict()
        verdict.problem = verdict.problem or Problem("malformed", 0, f"bad header: {exc}")
        return verdict
    for number, line in enumerate(it, start=2):
        try:
            entry = Entry.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            walk.verdict.problem = walk.verdict.problem or Problem(
                "malformed", walk.verdict.head_seq + 1, f"line {number}: {exc}")
            return walk.verdict
        if not walk.feed(entry):
            return walk.verdict
    return walk.expect_head(int(head["head"]["seq"]), str(head["head"]["hash"]))


def main(argv: list[str]) -> int:
    """`python -m rbee.core.audit_chain [--key KEYFILE] FILE…`: exit 0 when every file
    verifies (and, with the queen's seal key, every seal)."""
    parser = argparse.ArgumentParser(prog="python -m rbee.core.audit_chain")
    parser.add_argument("--key", type=Path, help="the queen's audit seal key file")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    key = SealKey.from_bytes(args.key.read_bytes()) if args.key else None
    walk: Walk | None = None
    for name in args.files:
        verdict = verify_export(read_lines(name), walk, key)
        if not verdict.ok:
            print(json.dumps(verdict.to_json()))
            return 1
        walk = Walk(verdict=verdict, key=key)
    print(json.dumps(walk.verdict.to_json() if walk else Verdict().to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
