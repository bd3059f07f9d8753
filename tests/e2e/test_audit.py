"""The audit log through a real queen, hive and fake-engine worker: requests made with the
official OpenAI SDK are recorded (facts, never text); `rbee audit verify` names an edited
row and a deleted one in the database file; the export verifies offline; a restarted
queen continues the chain and loses nothing on a clean stop."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from rbee.core.audit_chain import GENESIS, Entry, entry_hash, read_lines, verify_export
from tests.support.daemons import Daemon, rbee_env, run_cli, running_queen, start_queen

pytestmark = pytest.mark.e2e
SECRET = "the launch code is 0000"  # a prompt that must never reach the audit log


def ask(queen: Daemon, stream: bool = False) -> None:
    with OpenAI(base_url=f"{queen.url}/v1", api_key="unused", max_retries=0) as client:
        messages = [{"role": "user", "content": SECRET}]
        if stream:
            chunks = client.chat.completions.create(model="rbee-fake", messages=messages,
                                                    max_tokens=3, stream=True)
            assert list(chunks)
        else:
            answer = client.chat.completions.create(model="rbee-fake", messages=messages,
                                                    max_tokens=3)
            assert answer.usage is not None


def every_other_kind(queen: Daemon) -> None:
    """Speech, responses and embeddings: each path records its own entry."""
    with OpenAI(base_url=f"{queen.url}/v1", api_key="unused", max_retries=0) as client:
        assert client.audio.speech.create(model="rbee-fake-speech", voice="alloy",
                                          input=SECRET).content
        assert client.responses.create(model="rbee-fake", input=SECRET,
                                       max_output_tokens=3).output_text
        assert client.embeddings.create(model="rbee-fake-embedding", input=[SECRET]).data


def tamper(db: Path, sql: str) -> None:
    """An attacker with the file: plain sqlite3, triggers dropped first."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        conn.execute(sql)
    finally:
        conn.close()


def verify_cli(env: dict[str, str]) -> tuple[int, dict[str, object], str]:
    shown = run_cli(env, "audit", "verify")
    as_json = run_cli(env, "--json", "audit", "verify")
    return as_json.returncode, json.loads(as_json.stdout), shown.stdout + shown.stderr


def test_requests_are_audited_and_tampering_is_named(tmp_path: Path) -> None:
    env = rbee_env(tmp_path)
    db = tmp_path / "state" / "queen.db"
    for queen in running_queen(env):
        # Streams are recorded when they close, just after their last byte: they go first,
        # and non-streamed answers (recorded before they are sent) last.
        ask(queen, stream=True)
        every_other_kind(queen)
        ask(queen)
        page = httpx.get(f"{queen.url}/v1/admin/audit", params={"action": "inference"}).json()
        kinds = {(e["details"]["path"], e["subject"], e["details"]["stream"], e["outcome"])
                 for e in page["data"]}
        assert kinds == {("/v1/chat/completions", "rbee-fake", True, "ok"),
                         ("/v1/audio/speech", "rbee-fake-speech", True, "ok"),
                         ("/v1/responses", "rbee-fake", False, "ok"),
                         ("/v1/embeddings", "rbee-fake-embedding", False, "ok"),
                         ("/v1/chat/completions", "rbee-fake", False, "ok")}, kinds
        plain = page["data"][-1]
        assert plain["details"]["usage"]["completion_tokens"] == 3
        assert plain["details"]["hive"] == "localhost" and plain["details"]["worker"]
        assert SECRET not in json.dumps(page)

        code, verdict, shown = verify_cli(env)
        assert code == 0 and verdict["ok"] and "audit chain intact" in shown
        export = tmp_path / "audit.jsonl"
        done = run_cli(env, "audit", "export", "-o", str(export))
        assert done.returncode == 0, done.stderr
        assert verify_export(read_lines(export)).ok and SECRET not in export.read_text()
        assert SECRET.encode() not in db.read_bytes()

        tamper(db, "UPDATE audit_log SET outcome = 'error' WHERE seq = "
               f"{plain['seq']}")
        code, verdict, shown = verify_cli(env)
        assert code == 2 and verdict["problem"] == {
            "kind": "edited", "seq": plain["seq"],
            "message": f"entry {plain['seq']} does not match its hash: it was changed after "
                       "it was written"}
        assert f"broken at entry {plain['seq']}" in shown
        broken = tmp_path / "broken.jsonl"
        assert run_cli(env, "audit", "export", "-o", str(broken)).returncode == 2
        offline = verify_export(read_lines(broken))  # the auditor's verdict, the same entry
        assert offline.problem is not None and offline.problem.seq == plain["seq"]

        tamper(db, "DELETE FROM audit_log WHERE seq = 2")  # before the edited one
        code, verdict, shown = verify_cli(env)
        assert code == 2 and verdict["problem"]["kind"] == "missing"  # type: ignore[index]
        assert verdict["problem"]["seq"] == 2  # type: ignore[index]
        assert "entry 2 missing after entry 1" in shown


def test_bad_audit_queries_get_envelopes_naming_the_param(tmp_path: Path) -> None:
    env = rbee_env(tmp_path)
    for queen in running_queen(env):
        for params, name in (({"limit": "0"}, "limit"), ({"after": "-1"}, "after"),
                             ({"action": "x" * 10_000}, "action"),
                             ({"since": "nan"}, "since"), ({"archives": "maybe"}, "archives")):
            path = "/v1/admin/audit/verify" if name == "archives" else "/v1/admin/audit"
            r = httpx.get(f"{queen.url}{path}", params=params)
            assert r.status_code == 400, (params, r.text)
            assert r.json()["error"]["param"] == name and r.json()["error"]["type"] == \
                "invalid_request_error"


def test_a_restarted_queen_continues_the_chain(tmp_path: Path) -> None:
    env = rbee_env(tmp_path)
    queen = start_queen(env)
    try:
        ask(queen)
        assert run_cli(env, "infer", "-m", "rbee-fake", "hi", "--max-tokens", "2"
                       ).returncode == 0
    finally:
        queen.stop()  # SIGTERM: a clean stop writes every pending entry
    for queen in running_queen(env):
        ask(queen)
        code, verdict, _ = verify_cli(env)
        assert code == 0, verdict
        entries = httpx.get(f"{queen.url}/v1/admin/audit").json()["data"]
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        actions = [e["action"] for e in entries]
        assert actions.count("inference") == 2 and "job.infer" in actions
        listed = run_cli(env, "--json", "audit", "list", "--action", "job.")
        assert [e["action"] for e in json.loads(listed.stdout)["data"]] == ["job.infer"]
        shown = run_cli(env, "audit", "list", "--outcome", "ok", "--limit", "1")
        assert shown.returncode == 0 and "inference" in shown.stdout


def test_a_chain_rewritten_in_the_file_is_named_forged_after_a_restart(
        tmp_path: Path) -> None:
    """The attack the hashes alone miss: an entry edited and every later hash recomputed,
    while the queen is stopped. The restarted queen's seal key (a file of its own) names it."""
    env = rbee_env(tmp_path)
    db = Path(env["RBEE_QUEEN_STATE_DIR"]) / "queen.db"
    queen = start_queen(env)
    try:
        ask(queen)
        ask(queen)
        assert verify_cli(env)[0] == 0
    finally:
        queen.stop()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        rewrite_from(conn, 2)
    finally:
        conn.close()
    queen = start_queen(env)
    try:
        code, verdict, shown = verify_cli(env)
        assert code == 2 and verdict["problem"]["kind"] == "forged"  # type: ignore[index]
        assert verdict["problem"]["seq"] == 2  # type: ignore[index]
        assert "without the key" in shown
    finally:
        queen.stop()


def rewrite_from(conn: sqlite3.Connection, seq: int) -> None:
    """Edit entry `seq` and recompute its hash and every later one, linked as before."""
    rows = conn.execute("SELECT seq, at, action, outcome, tenant, actor_ref, actor, subject, "
                        "details, prev, hash FROM audit_log ORDER BY seq").fetchall()
    prev = next(r[10] for r in rows if r[0] == seq - 1) if seq > 1 else GENESIS
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    for r in rows:
        if r[0] < seq:
            continue
        entry = Entry(seq=r[0], at=r[1], action=r[2], outcome="error" if r[0] == seq else r[3],
                      tenant=r[4], actor_ref=r[5], actor=json.loads(r[6]), subject=r[7],
                      details=json.loads(r[8]), prev=prev)
        prev = entry_hash(entry)
        conn.execute("UPDATE audit_log SET outcome=?, prev=?, hash=? WHERE seq=?",
                     (entry.outcome, entry.prev, prev, entry.seq))
