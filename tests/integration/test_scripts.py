"""Lua scheduling scripts on a live queen: the seed's example routes and places by tenant,
dry runs change nothing, a failing script falls back (counted, narrated), hot reload, and the
active script survives a restart. Two real hives, labelled like GPU machines."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rbee.client import JobFailed
from tests.support.daemons import REPO, run_cli, start_queen
from tests.support.hives import Cluster, running_cluster

EXAMPLES = REPO / "examples" / "scripts"
BROKEN_ROUTE = 'function route(job, workers) error("boom") end\n'


@pytest.fixture
def labelled(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, {
        "h100-box": ("--labels", "gpu=h100", "--region", "eu-west"),
        "a100-box": ("--labels", "gpu=a100", "--region", "us-east"),
    }) as c:
        yield c


def cli(c: Cluster, *args: str) -> object:
    done = run_cli(c.queen.env, "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_shipped_examples_check_and_a_broken_script_is_refused(tmp_path: Path) -> None:
    for example in sorted(EXAMPLES.glob("*.lua")):
        done = run_cli({}, "script", "check", str(example))
        assert done.returncode == 0 and "ok" in done.stderr, (example, done.stderr)
    bad = tmp_path / "bad.lua"
    bad.write_text("function route(job, workers)\n  return workers:\nend\n")
    done = run_cli({}, "script", "check", str(bad))
    assert done.returncode == 1 and "bad:3" in done.stderr, done.stderr


def test_enterprise_example_routes_and_places_by_tenant(labelled: Cluster) -> None:
    c = labelled
    for hive in ("h100-box", "a100-box"):
        c.client.run("worker_spawn", model="rbee-fake", hive_id=hive)
    applied = cli(c, "script", "apply", str(EXAMPLES / "enterprise_gpus.lua"))
    assert applied == {**applied, "name": "enterprise_gpus", "active": True}
    by_worker = {w["id"]: w["hive_id"] for w in c.client.run("worker_list")["workers"]}
    for _ in range(3):  # least-loaded alone would alternate or tie-break; the script decides
        ent = c.client.run("infer", model="rbee-fake", prompt="q", max_tokens=2,
                           tenant="enterprise")
        assert by_worker[ent["worker_id"]] == "h100-box"
        other = c.client.run("infer", model="rbee-fake", prompt="q", max_tokens=2)
        assert by_worker[other["worker_id"]] == "a100-box"
    # the OpenAI API: `user` is the tenant
    r = httpx.post(f"{c.queen.url}/v1/chat/completions", json={
        "model": "rbee-fake", "max_tokens": 2, "user": "enterprise",
        "messages": [{"role": "user", "content": "q"}]})
    assert r.status_code == 200, r.text
    # dry run: where would a new model go? (nothing changes)
    before = {w["id"] for w in c.client.run("worker_list")["workers"]}
    plan = httpx.post(f"{c.queen.url}/v1/scheduler/explain",
                      json={"model": "smollm2", "tenant": "enterprise"}).json()
    assert plan["decision"] == "place" and plan["place"]["hive_id"] == "h100-box"
    assert plan["script"] == "enterprise_gpus"
    assert plan["place"]["report"]["policy"] == "script:enterprise_gpus"
    assert {w["id"] for w in c.client.run("worker_list")["workers"]} == before
    shown = cli(c, "script", "show")
    assert isinstance(shown, dict) and shown["stats"]["calls"] >= 7
    assert shown["stats"]["failures"] == 0
    # a dry run of a script that refuses everything explains the refusal (issue 10.9)
    refusing = c.queen.log.parent / "refuse.lua"
    refusing.write_text('function place(m, d) log("no place for " .. m.name); return false end')
    test = cli(c, "script", "test", str(refusing), "-m", "rbee-fake")
    assert isinstance(test, dict) and test["decision"] in ("route", "refused")
    test = cli(c, "script", "test", str(refusing), "-m", "smollm2")
    assert isinstance(test, dict) and test["decision"] == "refused"
    notes = test["place"]["report"]["notes"]
    assert "script log: no place for smollm2-135m-instruct" in notes
    assert any("refused all 2 candidate(s)" in n for n in notes)
    human = run_cli(c.queen.env, "script", "test", str(refusing), "-m", "smollm2")
    assert human.returncode == 0 and "refused" in human.stdout


def test_a_failing_script_falls_back_is_counted_and_hot_reload_fixes_it(
        labelled: Cluster, tmp_path: Path) -> None:
    c = labelled
    c.client.run("worker_spawn", model="rbee-fake", hive_id="h100-box")
    broken = tmp_path / "broken.lua"
    broken.write_text(BROKEN_ROUTE)
    cli(c, "script", "apply", str(broken))
    job = c.client.submit("infer", model="rbee-fake", prompt="q", max_tokens=2)
    events = list(c.client.run_events(job))
    assert any(e.event == "result" for e in events)  # still served
    state = httpx.get(f"{c.queen.url}/v1/scheduler").json()
    assert state["script"]["name"] == "broken" and state["script"]["failures"] == 1
    assert "boom" in state["script"]["last_error"]
    plan = httpx.post(f"{c.queen.url}/v1/scheduler/explain", json={"model": "rbee-fake"}).json()
    assert any("script failed" in n for n in plan["route"]["report"]["notes"])
    # hot reload: the fixed version replaces it at once, no restart
    cli(c, "script", "apply", str(EXAMPLES / "eu_only.lua"), "--name", "broken")
    plan = httpx.post(f"{c.queen.url}/v1/scheduler/explain", json={"model": "rbee-fake"}).json()
    assert plan["route"]["report"]["notes"] == [] and plan["route"]["hive_id"] == "h100-box"
    # a script that does not compile is refused and the active one stays
    with pytest.raises(JobFailed) as refused:
        c.client.run("script_save", name="broken", source="function route(")
    assert refused.value.code == "script_invalid"
    assert httpx.get(f"{c.queen.url}/v1/scheduler").json()["script"]["name"] == "broken"


def test_the_active_script_survives_a_queen_restart(labelled: Cluster) -> None:
    c = labelled
    cli(c, "script", "apply", str(EXAMPLES / "power_save.lua"))
    c.queen.stop()
    c.queen = start_queen(c.queen.env)
    state = httpx.get(f"{c.queen.url}/v1/scheduler").json()
    assert state["script"]["name"] == "power_save"
    cli(c, "script", "off")
    assert httpx.get(f"{c.queen.url}/v1/scheduler").json()["script"] is None
    for hostile in ("../x", "", "a" * 65, "$(id)"):
        r = httpx.post(f"{c.queen.url}/v1/jobs", json={"operation": "script_save",
                                                        "name": hostile, "source": "x"})
        assert r.status_code == 400, r.text
    r = httpx.post(f"{c.queen.url}/v1/jobs", json={"operation": "script_save", "name": "big",
                                                    "source": "x" * (300 * 1024)})
    assert r.status_code == 400


def test_eu_only_places_a_new_worker_in_the_eu_rather_than_use_a_us_one(
        labelled: Cluster) -> None:
    c = labelled
    us = c.client.run("worker_spawn", model="rbee-fake", hive_id="a100-box")["worker"]
    cli(c, "script", "apply", str(EXAMPLES / "eu_only.lua"))
    job = c.client.submit("infer", model="rbee-fake", prompt="q", max_tokens=2)
    events = list(c.client.run_events(job))
    result = next(e.data for e in events if e.event == "result")
    assert result["worker_id"] != us["id"]
    served_by = {w["id"]: w["hive_id"] for w in c.client.run("worker_list")["workers"]}
    assert served_by[result["worker_id"]] == "h100-box"  # the eu-west hive
    said = [e.data["message"] for e in events if e.event == "narration"]
    assert any("on h100-box" in m and "script:eu_only" in m for m in said), said


# Each comparison of two equal 8 MiB strings is a memcmp: few instructions, much CPU. Every
# call runs into the CPU backstop (0.5 s).
HEAVY_ROUTE = """
local s = "x" for _ = 1, 23 do s = s .. s end
local t = "x" for _ = 1, 23 do t = t .. t end
function route(job, workers)
  for _ = 1, 1000000 do if s == t then end end
  return workers[1]
end
"""


def test_a_cpu_heavy_script_stalls_nothing_and_is_disabled_after_failing_again_and_again(
        labelled: Cluster, tmp_path: Path) -> None:
    """Issue 10.8: such a script serialised 10 requests (the last took 6.6 s), blocked
    GET /v1/models for up to 3.2 s, and was never disabled."""
    c = labelled
    c.client.run("worker_spawn", model="rbee-fake", hive_id="h100-box")
    heavy = tmp_path / "heavy.lua"
    heavy.write_text(HEAVY_ROUTE)
    cli(c, "script", "apply", str(heavy))
    chat = {"model": "rbee-fake", "max_tokens": 2, "messages": [{"role": "user", "content": "q"}]}

    async def load() -> tuple[list[int], list[float]]:
        async with httpx.AsyncClient(base_url=c.queen.url, timeout=30) as http:
            requests = [asyncio.ensure_future(http.post("/v1/chat/completions", json=chat))
                        for _ in range(10)]
            lags = []
            while not all(r.done() for r in requests):
                started = time.perf_counter()
                assert (await http.get("/v1/models")).status_code == 200
                lags.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)
            return [(await r).status_code for r in requests], lags

    statuses, lags = asyncio.run(load())
    assert statuses == [200] * 10  # every request served (the built-in policy decided)
    assert len(lags) >= 5 and max(lags) < 0.25, lags  # one decision alone takes 0.5 s
    assert httpx.get(f"{c.queen.url}/v1/scheduler").json()["script"]["failures"] >= 1
    # Failures in a row disable it: narrated on the job that tripped it, shown everywhere.
    cli(c, "script", "apply", str(heavy))  # fresh counters
    said: list[str] = []
    for _ in range(5):
        if httpx.get(f"{c.queen.url}/v1/scheduler").json()["script"]["disabled"]:
            break
        job = c.client.submit("infer", model="rbee-fake", prompt="q", max_tokens=2)
        events = list(c.client.run_events(job))
        assert any(e.event == "result" for e in events)
        said += [e.data["message"] for e in events if e.event == "narration"]
    state = httpx.get(f"{c.queen.url}/v1/scheduler").json()["script"]
    assert state["name"] == "heavy" and state["failures"] == 5, state
    # whichever limit ends a call first: its CPU time or the caller's wall clock (0.5 s each)
    assert "5 times in a row" in state["disabled"]
    assert "CPU time limit" in state["disabled"] or "wall-clock limit" in state["disabled"]
    assert any("script heavy disabled" in m for m in said), said
    human = run_cli(c.queen.env, "scheduler")
    assert human.returncode == 0 and "DISABLED" in human.stdout, human.stdout
    plan = httpx.post(f"{c.queen.url}/v1/scheduler/explain", json={"model": "rbee-fake"}).json()
    assert plan["script_disabled"] == state["disabled"]
    assert plan["route"]["report"]["policy"] == "least-loaded"
    # applying it again gives it a fresh chance
    cli(c, "script", "apply", str(heavy))
    state = httpx.get(f"{c.queen.url}/v1/scheduler").json()["script"]
    assert state["disabled"] is None and state["failures"] == 0


def test_history_and_rollback_from_the_cli(tmp_path: Path) -> None:
    from tests.support.daemons import rbee_env, running_queen

    for queen in running_queen(rbee_env(tmp_path)):
        env = queen.env

        def cli_json(*args: str, env: dict[str, str] = env) -> object:
            done = run_cli(env, "--json", "script", *args)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        cli_json("apply", str(EXAMPLES / "eu_only.lua"), "--name", "pol")
        cli_json("apply", str(EXAMPLES / "power_save.lua"), "--name", "pol")
        history = cli_json("history", "pol")
        assert [(v["version"], v["in_force"]) for v in history["versions"]] == [  # type: ignore[index]
            (2, True), (1, False)]
        shown = run_cli(queen.env, "script", "history", "pol")
        assert shown.returncode == 0 and "v2" in shown.stdout and "(in force)" in shown.stdout
        cli_json("rollback", "pol", "1")
        again = cli_json("history", "pol")
        assert [v["version"] for v in again["versions"] if v["in_force"]] == [1]  # type: ignore[index]
        assert cli_json("show")["source"] == (EXAMPLES / "eu_only.lua").read_text()  # type: ignore[index]
        missing = run_cli(queen.env, "script", "rollback", "pol", "99")
        assert missing.returncode == 1 and "no version 99" in missing.stderr
