"""SchedulingPolicy: built-in policies, scripts choosing among filtered candidates, fallbacks,
refusals, and hints that scripts do not override."""

from __future__ import annotations

import pytest

from rbee.api.cluster import Device, WorkerInfo
from rbee.core.errors import NoCapacity
from rbee.core.states import WorkerState
from rbee.queen.policy import JobFacts, SchedulingPolicy
from rbee.scheduler.lua import LuaPolicy
from rbee.scheduler.placement import PlaceRequest
from rbee.scheduler.routing import RouteRequest
from rbee.scheduler.snapshot import ClusterSnapshot, HiveView, WorkerView
from tests.support.daemons import REPO

GB = 2**30
EXAMPLES = REPO / "examples" / "scripts"


def gpu(total: int = 80) -> Device:
    return Device(id="cuda:0", kind="cuda", name="GPU", memory_total=total * GB,
                  memory_free=total * GB)


def cluster(*workers: tuple[str, str, int]) -> ClusterSnapshot:
    hives = (HiveView("h100-eu", "http://a", True, (gpu(),), "eu-west", {"gpu": "h100"}),
             HiveView("a100-us", "http://b", True, (gpu(),), "us-east", {"gpu": "a100"}))
    views = tuple(WorkerView(WorkerInfo(id=wid, hive_id=hive, model="m", model_path="",
                                        device="cuda:0", engine="fake", url="http://x",
                                        state=WorkerState.READY), inflight)
                  for wid, hive, inflight in workers)
    return ClusterSnapshot(hives, views)


def scripted(source: str) -> SchedulingPolicy:
    policy = SchedulingPolicy()
    policy.use(LuaPolicy(source, "t"))
    return policy


async def test_the_seed_example_sends_enterprise_work_to_h100s_even_when_busier() -> None:
    policy = scripted((EXAMPLES / "enterprise_gpus.lua").read_text())
    snap = cluster(("w-eu", "h100-eu", 5), ("w-us", "a100-us", 0))
    chosen, report = await policy.route(snap, RouteRequest("m"), JobFacts(tenant="enterprise"))
    assert chosen is not None and chosen.info.id == "w-eu"
    assert report.policy == "script:t"
    other, _ = await policy.route(snap, RouteRequest("m"), JobFacts(tenant="acme"))
    assert other is not None and other.info.id == "w-us"
    placed, _ = await policy.place(snap, PlaceRequest("n", need=GB, mode="auto"),
                             JobFacts(tenant="enterprise"))
    assert placed is not None and placed.hive_id == "h100-eu"
    assert policy.stats.calls == 3 and policy.stats.failures == 0


async def test_a_failing_script_falls_back_counts_and_notes_it() -> None:
    policy = scripted('function route(job, workers) error("boom") end')
    snap = cluster(("w-eu", "h100-eu", 5), ("w-us", "a100-us", 0))
    chosen, report = await policy.route(snap, RouteRequest("m"))
    assert chosen is not None and chosen.info.id == "w-us"  # least-loaded decided
    assert policy.stats.failures == 1 and "boom" in (policy.stats.last_error or "")
    assert any("script failed" in n and "built-in" in n for n in report.notes)


async def test_nil_is_no_opinion_and_false_refuses() -> None:
    snap = cluster(("w-us", "a100-us", 0))
    shrug = scripted("function route(job, workers) return nil end\n"
                     "function place(model, devices) return nil end")
    chosen, report = await shrug.route(snap, RouteRequest("m"))
    assert chosen is not None and shrug.stats.fallbacks == 1 and report.notes
    eu = scripted((EXAMPLES / "eu_only.lua").read_text())
    # no EU worker: routing finds none (a new worker may be placed, in the EU)...
    chosen, report = await eu.route(snap, RouteRequest("m"))
    assert chosen is None and any("refused" in n for n in report.notes)
    placed, _ = await eu.place(snap, PlaceRequest("m", need=GB, mode="auto"))
    assert placed is not None and placed.hive_id == "h100-eu"
    # ...and with no EU room at all, placement is refused outright, not handed to the fallback:
    # a decision with its report (candidates and why), which the dispatcher raises
    full = ClusterSnapshot(snap.hives, (), reserved={"h100-eu/cuda:0": 80 * GB})
    placed, report = await eu.place(full, PlaceRequest("m", need=GB, mode="auto"))
    assert placed is None and isinstance(report.refusal, NoCapacity)
    assert report.refusal.code == "script_refused"
    assert report.to_dict()["refused"] is True and report.evaluated >= 1


async def test_a_refusal_is_explained_not_an_error() -> None:
    """Issue 10.9: `return false` made the dry run exit 1 with no report."""
    from rbee.queen.decision import decide_placement

    policy = scripted("function place(model, devices) return false end")
    snap = cluster(("w-us", "a100-us", 0))
    plan = await decide_placement(policy, snap, PlaceRequest("n", need=GB, mode="auto"), None)
    assert plan.action == "refused" and plan.eviction is None
    shown = plan.to_dict()["report"]
    assert shown["refused"] is True and shown["evaluated"] == 2
    assert any("refused all 2 candidate(s)" in n for n in shown["notes"])


async def test_pinned_placements_and_pinned_workers_bypass_the_script() -> None:
    policy = scripted((EXAMPLES / "enterprise_gpus.lua").read_text())
    snap = cluster(("w-eu", "h100-eu", 0), ("w-us", "a100-us", 0))
    placed, report = await policy.place(snap, PlaceRequest("n", hive_id="a100-us", need=GB),
                                  JobFacts(tenant="enterprise"))
    assert placed is not None and placed.hive_id == "a100-us"
    assert report.policy == "best-device" and policy.stats.calls == 0
    chosen, _ = await policy.route(snap, RouteRequest("m", worker_id="w-us"),
                             JobFacts(tenant="enterprise"))
    assert chosen is not None and chosen.info.id == "w-us"


@pytest.mark.parametrize(("routing", "expected"), [
    ("least-loaded", ["w-b", "w-b", "w-b"]),
    ("round-robin", ["w-b", "w-a", "w-b"]),
])
async def test_built_in_routing_policies(routing: str, expected: list[str]) -> None:
    policy = SchedulingPolicy(routing=routing)
    snap = cluster(("w-a", "h100-eu", 1), ("w-b", "a100-us", 0))
    picks = []
    for _ in expected:
        chosen, _ = await policy.route(snap, RouteRequest("m"))
        assert chosen is not None
        picks.append(chosen.info.id)
    assert picks == expected


async def test_scripts_see_every_field_of_the_data_contract() -> None:
    policy = scripted('''
function route(job, workers)
  for _, w in ipairs(workers) do
    log(string.format("%s %s %s %s %s %d %d %s %s", w.id, w.hive_id, w.model, w.device,
                      w.state, w.load, w.vram_free, w.region, w.labels.gpu))
  end
end
function place(model, devices)
  for _, d in ipairs(devices) do
    log(string.format("%s %s %s %s %s %d %d %s %d %s", d.key, d.hive_id, d.id, d.kind, d.name,
                      d.memory_total, d.memory_free, d.region, d.workers, d.labels.gpu))
  end
end''')
    snap = ClusterSnapshot(cluster(("w-eu", "h100-eu", 2)).hives,
                           cluster(("w-eu", "h100-eu", 2)).workers,
                           reserved={"h100-eu/cuda:0": 30 * GB})
    await policy.route(snap, RouteRequest("m"))
    script = policy.script
    assert isinstance(script, LuaPolicy)
    assert script.last_log == [f"w-eu h100-eu m cuda:0 ready 2 {50 * GB} eu-west h100"]
    await policy.place(snap, PlaceRequest("n", need=GB, mode="auto"))
    assert script.last_log == [
        f"h100-eu/cuda:0 h100-eu cuda:0 cuda GPU {80 * GB} {50 * GB} eu-west 1 h100",
        f"a100-us/cuda:0 a100-us cuda:0 cuda GPU {80 * GB} {80 * GB} us-east 0 a100"]


async def test_scripts_see_what_changed_between_snapshots_and_nothing_stale() -> None:
    policy = scripted("""
    function route(job, workers)
      local w = workers[1]
      log(w.id, w.model, w.region, w.labels.gpu, w.load)
      return nil
    end
    function place(model, devices)
      local d = devices[1]
      log(d.key, d.name, d.memory_total, d.region, d.labels.gpu, d.workers)
      return nil
    end""")
    snap = cluster(("w1", "h100-eu", 1))
    script = policy.script
    assert isinstance(script, LuaPolicy)

    async def seen(s: ClusterSnapshot) -> list[str]:
        await policy.route(s, RouteRequest("m", hive_id="h100-eu"))
        logs = list(script.last_log)
        await policy.place(s, PlaceRequest("m", need=GB, mode="auto"))
        return logs + [line for line in script.last_log if line.startswith("h100-eu")]

    first = ["w1 m eu-west h100 1", f"h100-eu/cuda:0 GPU {80 * GB} eu-west h100 1"]
    assert await seen(snap) == first
    assert await seen(snap) == first  # the same objects again: everything reused
    # the hive reported again: a new view with another region and labels, a bigger device
    moved = HiveView("h100-eu", "http://a", True, (gpu(96),), "eu-north", {"gpu": "h200"})
    snap2 = ClusterSnapshot((moved, snap.hives[1]), tuple(
        WorkerView(w.info.model_copy(update={"model": "m"}), 3) for w in snap.workers))
    assert await seen(snap2) == ["w1 m eu-north h200 3",
                           f"h100-eu/cuda:0 GPU {96 * GB} eu-north h200 1"]
    assert await seen(snap) == first  # and back


async def test_equally_loaded_workers_take_turns() -> None:
    """Issue 10.11: 20 sequential requests to two idle workers went 20/0 to one of them."""
    policy = SchedulingPolicy()
    snapshot = cluster(("w1", "h100-eu", 0), ("w2", "a100-us", 0))
    picks = [(await policy.route(snapshot, RouteRequest(model="m")))[0] for _ in range(20)]
    ids = [p.info.id for p in picks if p is not None]
    assert ids.count("w1") == ids.count("w2") == 10
    busier = cluster(("w1", "h100-eu", 1), ("w2", "a100-us", 0))  # no tie: the idle one
    assert {(await policy.route(busier, RouteRequest(model="m")))[0].info.id  # type: ignore[union-attr]
            for _ in range(5)} == {"w2"}


async def test_log_lines_come_with_the_decision() -> None:
    """Issue 10.10: log() went nowhere. Its lines are notes of the decision's report, which
    explain returns and the dispatcher narrates on the job stream."""
    policy = scripted('function route(job, workers)\n'
                      '  local w = workers:least_loaded()\n'
                      '  log("picked " .. w.id .. " for " .. (job.tenant or "nobody"))\n'
                      '  return w\n'
                      'end')
    snap = cluster(("w-eu", "h100-eu", 5), ("w-us", "a100-us", 0))
    chosen, report = await policy.route(snap, RouteRequest("m"), JobFacts(tenant="acme"))
    assert chosen is not None and chosen.info.id == "w-us"
    assert report.notes == ["script log: picked w-us for acme"]
    assert report.to_dict()["notes"] == report.notes


async def test_an_explained_route_is_the_one_the_next_request_takes() -> None:
    """Explain leaves no trace: with equal workers taking turns, a dry run must not move
    the turn, or the request after it goes elsewhere than explained."""
    policy = SchedulingPolicy()
    snapshot = cluster(("w1", "h100-eu", 0), ("w2", "a100-us", 0))
    await policy.route(snapshot, RouteRequest(model="m"))  # w1; the next turn is w2's
    for _ in range(3):
        shown, _ = await policy.route(snapshot, RouteRequest(model="m"), remember=False)
        assert shown is not None and shown.info.id == "w2"
    taken, _ = await policy.route(snapshot, RouteRequest(model="m"))
    assert taken is not None and taken.info.id == "w2"


async def test_scripts_see_slots_and_least_loaded_compares_load_per_slot() -> None:
    """A 4-slot worker running 2 is less loaded than a 1-slot worker running 1: a script's
    :least_loaded() agrees with the built-in policy (issue 10.14)."""
    hive = cluster().hives[0]
    views = (WorkerView(WorkerInfo(id="single", hive_id=hive.id, model="m", model_path="",
                                   device="cuda:0", engine="fake", url="http://x",
                                   state=WorkerState.READY), 1),
             WorkerView(WorkerInfo(id="batcher", hive_id=hive.id, model="m", model_path="",
                                   device="cuda:0", engine="fake", url="http://x",
                                   state=WorkerState.READY, slots=4), 2))
    snap = ClusterSnapshot((hive,), views)
    policy = scripted("function route(job, workers)\n"
                      "  for _, w in ipairs(workers) do log(w.id .. ' ' .. w.slots) end\n"
                      "  return workers:least_loaded()\nend")
    chosen, report = await policy.route(snap, RouteRequest("m"))
    assert chosen is not None and chosen.info.id == "batcher"
    assert report.notes == ["script log: single 1", "script log: batcher 4"]
    builtin, _ = await SchedulingPolicy().route(snap, RouteRequest("m"))
    assert builtin is not None and builtin.info.id == "batcher"
    policy.close()
