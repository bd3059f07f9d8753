"""GDPR (issue 13): export everything held about a user, erase it with a signed receipt
(content gone from the database file and the artifacts folder, the audit chain still
verifies), consent recorded and required where the tenant demands it, and who may ask.
An in-process queen with a bootstrap token in front of a real fake-engine worker."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rbee.storage.gdpr import ERASED
from tests.unit.queen.quota_rig import BOOT, MODEL, Rig, rig

SECRET = "ann's diagnosis is kept in a sealed envelope"  # her prompts: must vanish
BOB_SECRET = "bob keeps his bicycle in the cellar"  # another user's: must stay


@pytest.fixture
async def queen(tmp_path: Path) -> AsyncIterator[Rig]:
    async with rig(tmp_path) as q:
        yield q


async def _user(queen: Rig, tenant: str, name: str, email: str | None = None,
                **tenant_fields: Any) -> tuple[str, str]:
    """(user id, key) of a new user of `tenant` (created when missing)."""
    tenants = {t["name"] for t in (await queen.admin("GET", "/tenants"))["data"]}
    if tenant not in tenants:
        await queen.admin("POST", "/tenants", json={"name": tenant, **tenant_fields})
    user = await queen.admin("POST", "/users", json={"tenant": tenant, "name": name,
                                                     "email": email})
    made = await queen.admin("POST", "/keys", json={"user": user["id"]})
    return user["id"], made["key"]


async def _job(queen: Rig, key: str, prompt: str) -> str:
    r = await queen.as_(key, "POST", "/v1/jobs", json={
        "operation": "infer", "model": MODEL, "prompt": prompt, "max_tokens": 3})
    assert r.status_code == 200, r.text
    job_id: str = r.json()["job_id"]
    for _ in range(500):
        state = (await queen.as_(key, "GET", f"/v1/jobs/{job_id}")).json()["state"]
        if state in ("done", "failed", "cancelled"):
            break
        await asyncio.sleep(0.01)
    assert state == "done"
    return job_id


async def _artifact(queen: Rig, owner: str, content: str) -> Path:
    async def chunks() -> AsyncIterator[bytes]:
        yield content.encode()

    made = await queen.svc.artifacts.put(chunks(), media_type="video/mp4", owner=owner,
                                         filename="v.mp4")
    return queen.svc.artifacts.root / made.id


async def _gdpr(queen: Rig, key: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return await queen.as_(key, method, f"/gdpr{path}", **kw)


def _on_disk(folder: Path, needles: list[str]) -> list[str]:
    """Which of `needles` the database files (and the WAL) hold, byte for byte."""
    blobs = b"".join(p.read_bytes() for p in folder.glob("queen.db*"))
    return [n for n in needles if n.encode() in blobs]


async def test_export_holds_everything_then_erasure_leaves_nothing_personal(
        queen: Rig, tmp_path: Path) -> None:
    ann, ann_key = await _user(queen, "acme", "ann-smith", "ann@example.org")
    bob, bob_key = await _user(queen, "acme", "bob-jones")
    assert (await queen.chat(ann_key, SECRET)).status_code == 200
    r = await queen.as_(ann_key, "POST", "/v1/responses", json={
        "model": MODEL, "input": SECRET, "max_output_tokens": 3})
    assert r.status_code == 200, r.text
    response_id = r.json()["id"]
    job_id = await _job(queen, ann_key, SECRET)
    bob_job = await _job(queen, bob_key, BOB_SECRET)
    artifact = await _artifact(queen, job_id, SECRET)
    bob_artifact = await _artifact(queen, bob_job, BOB_SECRET)
    consent = await _gdpr(queen, ann_key, "POST", "/consent", json={
        "subject": ann, "purpose": "marketing", "granted": True})
    assert consent.status_code == 200 and consent.json()["by_key"] == ann_key.split("-")[1]

    got = await _gdpr(queen, BOOT, "GET", "/export", params={"subject": ann})
    assert got.status_code == 200, got.text
    export = got.json()
    assert export["format"] == "rbee-gdpr-export/1" and export["subject"] == ann
    assert export["user"]["email"] == "ann@example.org"
    assert export["tenant"]["name"] == "acme"
    assert [k["id"] for k in export["keys"]] == [ann_key.split("-")[1]]
    assert ann_key not in got.text and "digest" not in export["keys"][0]
    assert sum(u["requests"] for u in export["usage"]) == 3  # chat, response, job
    assert [j["job_id"] for j in export["jobs"]] == [job_id]
    assert export["jobs"][0]["request"]["prompt"] == SECRET and export["jobs"][0]["events"]
    assert [s["id"] for s in export["responses"]] == [response_id]
    assert SECRET in json.dumps(export["responses"])
    assert [a["id"] for a in export["artifacts"]] == [artifact.name]
    assert export["artifacts"][0]["url"] == f"/v1/artifacts/{artifact.name}"
    assert [(c["purpose"], c["granted"]) for c in export["consents"]] == [("marketing", True)]
    actions = {e["action"] for e in export["audit"]}
    assert {"admin.user.create", "inference", "job.infer", "gdpr.consent"} <= actions
    assert any(ann in json.dumps(p)
               for e in export["audit"] for p in e["personal"])
    assert BOB_SECRET not in got.text and bob not in got.text
    mine = await _gdpr(queen, ann_key, "GET", "/export", params={"subject": ann})
    assert mine.status_code == 200 and mine.json()["subject"] == ann
    usage_before = (await queen.as_(BOOT, "GET", "/v1/usage")).json()["data"]

    erased = await _gdpr(queen, BOOT, "POST", "/delete", json={"subject": ann})
    assert erased.status_code == 200, erased.text
    receipt = erased.json()
    assert receipt["subject"] == ann and receipt["user"] == "removed"
    assert receipt["deleted"] == {"jobs": 1, "responses": 1, "artifacts": 1, "keys": 1,
                                  "consents": 1, "usage_rows_aggregated": 1,
                                  "script_versions_unnamed": 0}
    assert receipt["audit"]["entries_unlinked"] > 0 and receipt["signature"]
    check = await _gdpr(queen, bob_key, "POST", "/receipts/verify", json=receipt)
    assert check.json() == {"valid": True}
    forged = {**receipt, "deleted": {**receipt["deleted"], "jobs": 7}}
    check = await _gdpr(queen, BOOT, "POST", "/receipts/verify", json=forged)
    assert check.json() == {"valid": False}

    # The person is gone: no export, no key, no content on disk; the chain still verifies.
    gone = await _gdpr(queen, BOOT, "GET", "/export", params={"subject": ann})
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "subject"
    assert (await queen.chat(ann_key)).status_code == 401
    assert not artifact.exists() and not artifact.with_name(f"{artifact.name}.json").exists()
    assert bob_artifact.exists()
    folder = b"".join(f.read_bytes() for f in artifact.parent.iterdir())
    assert SECRET.encode() not in folder and BOB_SECRET.encode() in folder
    verdict = (await queen.as_(BOOT, "GET", "/v1/admin/audit/verify")).json()
    assert verdict["ok"], verdict
    await queen.svc.audit.flush()
    assert _on_disk(tmp_path, [SECRET, ann, "ann-smith", "ann@example.org"]) == []
    assert _on_disk(tmp_path, [BOB_SECRET, bob]) == [BOB_SECRET, bob]  # the check can see
    # The erasure is audited without naming her; the tenant's usage totals are unchanged.
    entries = (await queen.as_(BOOT, "GET", "/v1/admin/audit",
                               params={"action": "gdpr.erase"})).json()["data"]
    assert len(entries) == 1 and ann not in json.dumps(entries)
    usage_after = (await queen.as_(BOOT, "GET", "/v1/usage")).json()["data"]
    assert sum(u["requests"] for u in usage_after) == sum(u["requests"] for u in usage_before)
    assert ERASED in {u["key_id"] for u in usage_after}
    assert ann_key.split("-")[1] not in {u["key_id"] for u in usage_after}


async def test_a_user_acts_for_itself_only(queen: Rig) -> None:
    ann, ann_key = await _user(queen, "acme", "ann")
    bob, bob_key = await _user(queen, "globex", "bob")
    carl, carl_key = await _user(queen, "acme", "carl")
    for method, path, kw in (("GET", "/export", {"params": {"subject": ann}}),
                             ("POST", "/delete", {"json": {"subject": ann}}),
                             ("POST", "/consent", {"json": {"subject": ann,
                                                            "purpose": "processing",
                                                            "granted": True}})):
        for key in (bob_key, carl_key):  # another tenant's user, and the same tenant's
            r = await _gdpr(queen, key, method, path, **kw)
            assert r.status_code == 404, r.text
            assert r.json()["error"]["param"] == "subject"
    assert (await _gdpr(queen, ann_key, "GET", "/export",
                        params={"subject": ann})).status_code == 200
    # Her own erasure: her key stops working, and the audit entry does not name her.
    r = await _gdpr(queen, ann_key, "POST", "/delete", json={"subject": ann})
    assert r.status_code == 200, r.text
    assert (await queen.chat(ann_key)).status_code == 401
    entry = (await queen.as_(BOOT, "GET", "/v1/admin/audit",
                             params={"action": "gdpr.erase"})).json()["data"][0]
    assert ann not in json.dumps(entry) and ann_key.split("-")[1] not in json.dumps(entry)
    assert (await queen.chat(bob_key)).status_code == 200  # others untouched
    assert bob and carl


async def test_consent_is_required_where_the_tenant_demands_it(queen: Rig) -> None:
    ann, ann_key = await _user(queen, "clinic", "ann", requires_consent=True)
    _, free_key = await _user(queen, "acme", "bob")
    refused = await queen.chat(ann_key)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "consent_required"
    assert refused.json()["error"]["type"] == "permission_error"
    job = await queen.as_(ann_key, "POST", "/v1/jobs", json={
        "operation": "infer", "model": MODEL, "prompt": "x"})
    assert job.status_code == 403 and job.json()["error"]["code"] == "consent_required"
    embed = await queen.as_(ann_key, "POST", "/v1/embeddings", json={
        "model": "rbee-fake-embedding", "input": "x"})
    assert embed.json()["error"]["code"] == "consent_required"
    video = await queen.as_(ann_key, "POST", "/v1/videos", json={
        "model": "rbee-fake-video", "prompt": "x"})
    assert video.status_code == 403 and video.json()["error"]["code"] == "consent_required"
    status = await queen.as_(ann_key, "POST", "/v1/jobs", json={"operation": "status"})
    assert status.status_code == 200  # not processing her data
    assert (await queen.chat(free_key)).status_code == 200  # a tenant without the rule

    async def decide(granted: bool, purpose: str = "processing") -> None:
        r = await _gdpr(queen, ann_key, "POST", "/consent", json={
            "subject": ann, "purpose": purpose, "granted": granted})
        assert r.status_code == 200, r.text

    await decide(True, "marketing")  # another purpose does not count
    assert (await queen.chat(ann_key)).status_code == 403
    await decide(True)
    assert (await queen.chat(ann_key)).status_code == 200
    await decide(False)
    assert (await queen.chat(ann_key)).status_code == 403
    history = (await _gdpr(queen, BOOT, "GET", "/export", params={"subject": ann})).json()
    assert [(c["purpose"], c["granted"]) for c in history["consents"]] == [
        ("marketing", True), ("processing", True), ("processing", False)]
    entries = (await queen.as_(BOOT, "GET", "/v1/admin/audit",
                               params={"action": "gdpr.consent"})).json()["data"]
    assert len(entries) == 3 and ann not in json.dumps([e["subject"] for e in entries])
    # An admin lifts the rule: the next request meets it.
    changed = await queen.admin("PATCH", "/tenants/clinic", json={"requires_consent": False})
    assert changed["requires_consent"] is False
    assert (await queen.chat(ann_key)).status_code == 200


async def test_bad_gdpr_input_is_a_clear_envelope(queen: Rig, tmp_path: Path) -> None:
    ann, _ = await _user(queen, "acme", "ann")

    async def error(method: str, path: str, status: int, **kw: Any) -> dict[str, Any]:
        r = await _gdpr(queen, BOOT, method, path, **kw)
        assert r.status_code == status, r.text
        body: dict[str, Any] = r.json()["error"]
        assert set(body) >= {"message", "type", "param", "code"}
        return body

    for subject in ("usr_doesnotexist", "' OR 1=1 --", "../../etc/passwd"):
        assert (await error("GET", "/export", 404, params={"subject": subject}))[
            "param"] == "subject"
        assert (await error("POST", "/delete", 404, json={"subject": subject}))[
            "param"] == "subject"
    assert (await error("GET", "/export", 400))["param"] == "subject"  # missing
    assert (await error("GET", "/export", 400, params={"subject": "x" * 65}))[
        "param"] == "subject"
    assert (await error("POST", "/delete", 400, json={"subject": 7}))["param"] == "subject"
    assert (await error("POST", "/delete", 400, json={"subject": ann, "also": 1}))[
        "param"] == "also"
    await error("POST", "/delete", 400, content=b"{not json",
                headers={"content-type": "application/json"})
    assert (await error("POST", "/consent", 400, json={
        "subject": ann, "purpose": "../x", "granted": True}))["param"] == "purpose"
    assert (await error("POST", "/consent", 400, json={
        "subject": ann, "purpose": "processing", "granted": "yes"}))["param"] == "granted"
    assert (await error("POST", "/consent", 404, json={
        "subject": "nobody", "purpose": "processing", "granted": True}))["param"] == "subject"
    await error("POST", "/receipts/verify", 400, json=[1, 2])
    bad = await _gdpr(queen, BOOT, "POST", "/receipts/verify", json={"signature": 5})
    assert bad.json() == {"valid": False}
    assert (await queen.as_("rbee-nope-nope", "GET", "/gdpr/export",
                            params={"subject": ann})).status_code == 401
    r = await queen.as_(BOOT, "PATCH", "/v1/admin/tenants/nowhere",
                        json={"requires_consent": True})
    assert r.status_code == 404 and r.json()["error"]["param"] == "tenant"
    r = await queen.as_(BOOT, "PATCH", "/v1/admin/tenants/acme",
                        json={"requires_consent": "yes"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "requires_consent"
    r = await queen.as_(BOOT, "POST", "/v1/admin/tenants",
                        json={"name": "x1", "requires_consent": 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "requires_consent"
    # Nothing was erased by any of that.
    assert (await _gdpr(queen, BOOT, "GET", "/export", params={"subject": ann})).status_code \
        == 200


async def test_the_receipt_secret_is_private_and_stable(queen: Rig, tmp_path: Path) -> None:
    ann, _ = await _user(queen, "acme", "ann")
    bob, _ = await _user(queen, "acme", "bob")
    first = (await _gdpr(queen, BOOT, "POST", "/delete", json={"subject": ann})).json()
    second = (await _gdpr(queen, BOOT, "POST", "/delete", json={"subject": bob})).json()
    secret = tmp_path / "gdpr-receipt.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_bytes()) == 32
    for receipt in (first, second):
        check = await _gdpr(queen, BOOT, "POST", "/receipts/verify", json=receipt)
        assert check.json() == {"valid": True}


async def test_erasure_cancels_a_running_job_and_leaves_nothing_of_it(queen: Rig) -> None:
    ann, ann_key = await _user(queen, "acme", "ann")
    queen.engine.gate.clear()  # the job's generation waits: it is running when erased
    r = await queen.as_(ann_key, "POST", "/v1/jobs", json={
        "operation": "infer", "model": MODEL, "prompt": SECRET, "max_tokens": 3})
    job_id = r.json()["job_id"]
    for _ in range(500):
        if queen.engine.waiting:
            break
        await asyncio.sleep(0.01)
    assert queen.engine.waiting == 1
    erased = await _gdpr(queen, BOOT, "POST", "/delete", json={"subject": ann})
    assert erased.status_code == 200, erased.text
    assert erased.json()["deleted"]["jobs"] == 1
    queen.engine.gate.set()
    await asyncio.sleep(0.2)  # anything the cancelled job would still write, written
    got = await queen.as_(BOOT, "GET", f"/v1/jobs/{job_id}")
    assert got.status_code == 404
    assert queen.svc.db.query("SELECT COUNT(*) FROM job_events WHERE job_id=?",
                              (job_id,)) == [(0,)]


async def test_erasure_waits_for_a_request_in_flight_so_it_leaves_nothing(
        queen: Rig, tmp_path: Path) -> None:
    ann, ann_key = await _user(queen, "acme", "ann-smith")
    queen.engine.gate.clear()
    asking = asyncio.create_task(queen.chat(ann_key, SECRET))
    for _ in range(500):
        if queen.engine.waiting:
            break
        await asyncio.sleep(0.01)
    erasing = asyncio.create_task(_gdpr(queen, BOOT, "POST", "/delete",
                                        json={"subject": ann}))
    await asyncio.sleep(0.3)
    assert not erasing.done()  # her request is still running: its entry is not written yet
    queen.engine.gate.set()
    assert (await asyncio.wait_for(asking, 10)).status_code == 200
    assert (await asyncio.wait_for(erasing, 10)).status_code == 200
    await queen.svc.audit.flush()
    await queen.svc.usage.flush()
    assert _on_disk(tmp_path, [ann, "ann-smith", SECRET]) == []
    assert (await queen.as_(BOOT, "GET", "/v1/admin/audit/verify")).json()["ok"]


async def test_a_request_that_outlives_the_erasure_writes_nothing_of_the_person_back(
        queen: Rig, tmp_path: Path) -> None:
    """The erasure waits a bounded time; a request still running after it (a long
    generation) ends afterwards, and its audit entry, usage and Response must not bring the
    person back."""
    queen.svc.gdpr._drain_seconds = 0.2
    ann, ann_key = await _user(queen, "acme", "ann-smith")
    queen.engine.gate.clear()
    asking = asyncio.create_task(queen.chat(ann_key, SECRET))
    answering = asyncio.create_task(queen.as_(ann_key, "POST", "/v1/responses", json={
        "model": MODEL, "input": SECRET, "max_output_tokens": 3}))
    for _ in range(500):
        if queen.engine.waiting >= 2:
            break
        await asyncio.sleep(0.01)
    erased = await _gdpr(queen, BOOT, "POST", "/delete", json={"subject": ann})
    assert erased.status_code == 200 and not asking.done()  # it did not wait for them
    queen.engine.gate.set()
    assert (await asyncio.wait_for(asking, 10)).status_code == 200
    assert (await asyncio.wait_for(answering, 10)).status_code == 200
    await queen.svc.audit.flush()
    await queen.svc.usage.flush()
    assert _on_disk(tmp_path, [ann, "ann-smith", SECRET]) == []
    assert queen.svc.db.query("SELECT COUNT(*) FROM responses") == [(0,)]
    rows = (await queen.as_(BOOT, "GET", "/v1/usage")).json()["data"]
    assert {r["key_id"] for r in rows} == {ERASED}  # the tenant's bill still counts them
    assert sum(r["requests"] for r in rows) == 2
    assert (await queen.as_(BOOT, "GET", "/v1/admin/audit/verify")).json()["ok"]
