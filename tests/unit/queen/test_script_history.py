"""Script history and rollback through the job API, the check endpoint, and what a dry run
says about each candidate; with hostile and oversized input. The queen runs in process with
its lifespan, keys and roles (no hive)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rbee.core.clock import FakeClock
from rbee.queen.app import create_app
from rbee.queen.identity import key_id_of, operation_role
from rbee.queen.services import QueenServices, build_services
from rbee.queen.settings import QueenSettings
from rbee.storage.audit import Filters

BOOT = "bootstrap-admin-token-for-script-tests"
V1 = "function route(job, workers) return nil end\n"
V2 = "-- second\nfunction route(job, workers) return workers:least_loaded() end\n"
BROKEN = "function route(job, workers)\n  local x = \n  return nil\nend\n"


class Queen:
    def __init__(self, http: httpx.AsyncClient, svc: QueenServices) -> None:
        self.http = http
        self.svc = svc

    async def post(self, path: str, body: Any, key: str = BOOT) -> httpx.Response:
        return await self.http.post(path, json=body, headers={"Authorization": f"Bearer {key}"})

    async def job(self, body: dict[str, Any], key: str = BOOT) -> tuple[str, dict[str, Any]]:
        """(terminal event, the result or the error)."""
        r = await self.post("/v1/jobs", body, key)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = {}
        async for e in self.svc.jobs.events(r.json()["job_id"]):
            if e is None:
                continue
            if e.event in ("result", "error"):
                result = e.data
            if e.event in ("done", "error", "cancelled"):
                return e.event, result
        raise AssertionError("no terminal event")

    async def ok(self, body: dict[str, Any], key: str = BOOT) -> dict[str, Any]:
        event, result = await self.job(body, key)
        assert event == "done", result
        return result

    async def key(self, role: str) -> str:
        auth = {"Authorization": f"Bearer {BOOT}"}
        await self.http.post("/v1/admin/tenants", json={"name": f"t-{role}"}, headers=auth)
        user = (await self.http.post("/v1/admin/users", json={"tenant": f"t-{role}",
                                                              "name": "u"}, headers=auth)).json()
        made = (await self.http.post("/v1/admin/keys", json={"user": user["id"], "role": role},
                                     headers=auth)).json()
        return str(made["key"])


@pytest.fixture
async def queen(tmp_path: Path) -> AsyncIterator[Queen]:
    settings = QueenSettings(api_token=BOOT, state_dir=tmp_path, local_hive=False)
    svc = build_services(settings, clock=FakeClock(start=1_800_000_000.0))
    app = create_app(settings, services=svc)
    transport = httpx.ASGITransport(app=app)
    async with (app.router.lifespan_context(app),  # type: ignore[attr-defined]
                httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http):
        yield Queen(http, svc)


async def test_saves_are_versions_and_a_rollback_restores_one_audited(queen: Queen) -> None:
    admin = await queen.key("admin")
    first = await queen.ok({"operation": "script_save", "name": "fair", "source": V1}, admin)
    assert first["version"] == 1 and first["active"]
    await queen.ok({"operation": "script_save", "name": "fair", "source": V2})
    history = await queen.ok({"operation": "script_history", "name": "fair"})
    assert history["version"] == 2 and history["active"]
    assert [(v["version"], v["saved_by"], v["in_force"], v["lines"])
            for v in history["versions"]] == [(2, "bootstrap", True, 3),
                                              (1, key_id_of(admin), False, 2)]
    old = await queen.ok({"operation": "script_get", "name": "fair", "version": 1})
    assert old["source"] == V1
    back = await queen.ok({"operation": "script_rollback", "name": "fair", "version": 1})
    assert back["active"] and back["version"] == 1 and back["source"] == V1
    assert queen.svc.dispatcher.policy.script is not None
    state = (await queen.http.get("/v1/scheduler",
                                  headers={"Authorization": f"Bearer {BOOT}"})).json()
    assert state["script"]["name"] == "fair"
    await queen.svc.audit.flush()
    entries = [(e.action, e.subject, e.outcome)
               for e, _ in await queen.svc.audit.page(Filters(action="admin.script"))]
    assert ("admin.script.save", "fair", "ok") in entries
    assert ("admin.script.rollback", "fair@v1", "ok") in entries


async def test_an_unknown_version_or_script_is_a_404_and_changes_nothing(queen: Queen) -> None:
    await queen.ok({"operation": "script_save", "name": "fair", "source": V1})
    for body, code in (({"name": "fair", "version": 7}, "script_version_not_found"),
                       ({"name": "ghost", "version": 1}, "script_not_found")):
        event, error = await queen.job({"operation": "script_rollback", **body})
        assert (event, error["code"]) == ("error", code)
    event, error = await queen.job({"operation": "script_get", "name": "fair", "version": 3})
    assert (event, error["code"]) == ("error", "script_version_not_found")
    history = await queen.ok({"operation": "script_history", "name": "fair"})
    assert [v["version"] for v in history["versions"]] == [1]


@pytest.mark.parametrize("body", [
    {"operation": "script_rollback", "name": "../etc/passwd", "version": 1},
    {"operation": "script_history", "name": "a/b"},
    {"operation": "script_rollback", "name": "fair", "version": 0},
    {"operation": "script_rollback", "name": "fair", "version": 2**40},
    {"operation": "script_rollback", "name": "fair", "version": "1"},
    {"operation": "script_rollback", "name": "fair"},
    {"operation": "script_get", "name": "fair", "version": True},
    {"operation": "script_save", "name": "big", "source": "-- " + "x" * (1 << 20)},
    {"operation": "script_save", "name": "<script>alert(1)</script>", "source": V1},
])
async def test_hostile_names_versions_and_a_1mb_script_are_400s(queen: Queen,
                                                                body: dict[str, Any]) -> None:
    r = await queen.post("/v1/jobs", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "alert(1)" not in r.text  # never echoes the input


async def test_operators_read_the_history_but_only_admins_roll_back(queen: Queen) -> None:
    assert operation_role("script_history") == "operator"
    assert operation_role("script_rollback") == "admin"
    await queen.ok({"operation": "script_save", "name": "fair", "source": V1})
    operator = await queen.key("operator")
    history = await queen.ok({"operation": "script_history", "name": "fair"}, operator)
    assert history["versions"][0]["version"] == 1
    r = await queen.post("/v1/jobs", {"operation": "script_rollback", "name": "fair",
                                      "version": 1}, operator)
    assert r.status_code == 403
    user = await queen.key("user")
    r = await queen.post("/v1/scheduler/check", {"source": V1}, user)
    assert r.status_code == 403


async def test_check_answers_the_lua_error_and_its_line(queen: Queen) -> None:
    r = await queen.post("/v1/scheduler/check", {"source": V2})
    assert r.status_code == 200 and r.json() == {"ok": True, "hooks": ["route"],
                                                 "message": None, "line": None}
    r = await queen.post("/v1/scheduler/check", {"source": BROKEN, "name": "mine"})
    body = r.json()
    assert r.status_code == 200 and body["ok"] is False and body["line"] == 3
    assert "mine:3:" in body["message"]
    r = await queen.post("/v1/scheduler/check", {"source": "x = 1\nerror('at load')\n"})
    assert r.json()["ok"] is False and r.json()["line"] == 2
    r = await queen.post("/v1/scheduler/check", {"source": "local a = 1"})
    assert r.json()["ok"] is False and r.json()["line"] is None  # no hook: no line to mark
    # a sandbox escape attempt is just a script that fails to load
    r = await queen.post("/v1/scheduler/check", {"source": "os.execute('id')\n"
                                                 "function route() end"})
    assert r.json()["ok"] is False


@pytest.mark.parametrize(("body", "status"), [
    ({"source": "-- " + "x" * (1 << 20)}, 400),  # 1 MB
    ({"source": ""}, 400),
    ({}, 400),
    ({"source": V1, "name": "../x"}, 400),
    ({"source": V1, "extra": 1}, 400),
    ({"source": 12}, 400),
    ([V1], 400),
])
async def test_check_refuses_what_is_not_a_script(queen: Queen, body: Any, status: int) -> None:
    r = await queen.post("/v1/scheduler/check", body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_check_needs_json_and_a_key(queen: Queen) -> None:
    r = await queen.http.post("/v1/scheduler/check", content=V1,
                              headers={"Authorization": f"Bearer {BOOT}",
                                       "Content-Type": "text/plain"})
    assert r.status_code == 415
    r = await queen.http.post("/v1/scheduler/check", json={"source": V1})
    assert r.status_code == 401


async def test_a_dry_run_names_the_script_it_ran(queen: Queen) -> None:
    """It answered "script": null for the editor's script (read after the dry run's policy
    closed); and the active script's name when none is given."""
    r = await queen.post("/v1/scheduler/explain", {"model": "rbee-fake", "source": V1})
    assert r.status_code == 200 and r.json()["script"] == "dry-run"
    assert r.json()["route"]["report"]["candidates"] == []  # no hive: nothing to list
    await queen.ok({"operation": "script_save", "name": "fair", "source": V1})
    r = await queen.post("/v1/scheduler/explain", {"model": "rbee-fake"})
    assert r.json()["script"] == "fair"
    for hostile in ({"model": "rbee-fake", "source": "-- " + "x" * (1 << 20)},
                    {"model": "../../etc/passwd\u0000"}, {"source": BROKEN}):
        r = await queen.post("/v1/scheduler/explain", hostile)
        assert r.status_code in (400, 404), (hostile, r.text)
        assert r.json()["error"]["message"]


async def test_changes_to_scripts_happen_one_at_a_time(tmp_path: Path) -> None:
    """An activate awaits its compile between reading the script and putting it in force;
    a delete in that gap used to leave a deleted script deciding until a restart."""
    import asyncio

    from rbee.queen.policy import SchedulingPolicy
    from rbee.queen.scripts import Scripts
    from rbee.storage.db import connect
    from rbee.storage.scripts import ScriptStore

    policy = SchedulingPolicy("least-loaded", "best-fit")
    scripts = Scripts(ScriptStore(connect(tmp_path / "q.db")), policy, FakeClock())
    await scripts.save("s", "function route(req, workers) return nil end", activate=False)
    activating = asyncio.create_task(scripts.activate("s"))
    await asyncio.sleep(0)  # the activate has read the row and is compiling
    await scripts.delete("s")
    await activating
    assert policy.script is None and scripts.list() == []


async def test_erasing_the_saver_leaves_the_versions_without_their_key(queen: Queen) -> None:
    """The history names the key that saved each version: that key id is the person's
    pseudonym, in their GDPR export and gone from the history once they are erased."""
    admin = await queen.key("admin")
    await queen.ok({"operation": "script_save", "name": "fair", "source": V1}, admin)
    await queen.ok({"operation": "script_save", "name": "fair", "source": V2})
    auth = {"Authorization": f"Bearer {BOOT}"}
    keys = (await queen.http.get("/v1/admin/keys", headers=auth)).json()["data"]
    (saver,) = [k["user_id"] for k in keys if k["id"] == key_id_of(admin)]
    export = (await queen.http.get("/gdpr/export", params={"subject": saver},
                                   headers=auth)).json()
    assert [(v["name"], v["version"], v["key_id"]) for v in export["script_versions"]] == [
        ("fair", 1, key_id_of(admin))]
    receipt = (await queen.http.post("/gdpr/delete", json={"subject": saver},
                                     headers=auth)).json()
    assert receipt["deleted"]["script_versions_unnamed"] == 1
    history = await queen.ok({"operation": "script_history", "name": "fair"})
    assert [(v["version"], v["saved_by"]) for v in history["versions"]] == [
        (2, "bootstrap"), (1, "erased")]
    old = await queen.ok({"operation": "script_get", "name": "fair", "version": 1})
    assert old["source"] == V1  # the cluster's script itself stays
