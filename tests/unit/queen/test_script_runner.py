"""Issue 10.8: scripts run off the event loop, under a wall-clock limit, and a script that keeps
failing is set aside. Real Lua scripts (lupa releases the GIL while Lua runs)."""

from __future__ import annotations

import asyncio
import time

from rbee.api.cluster import WorkerInfo
from rbee.core.states import WorkerState
from rbee.queen.policy import SchedulingPolicy
from rbee.scheduler.lua import LuaPolicy
from rbee.scheduler.routing import RouteRequest
from rbee.scheduler.snapshot import ClusterSnapshot, HiveView, WorkerView

# Each comparison of two equal 8 MiB strings is a memcmp: few instructions, much CPU.
HEAVY = """
local s = "x" for _ = 1, 23 do s = s .. s end
local t = "x" for _ = 1, 23 do t = t .. t end
function route(job, workers)
  for _ = 1, ROUNDS do if s == t then end end
  return workers[1]
end"""


def cluster() -> ClusterSnapshot:
    hive = HiveView("h", "http://h", True, (), None, {})
    views = tuple(WorkerView(WorkerInfo(id=wid, hive_id="h", model="m", model_path="",
                                        device="cpu", engine="fake", url="http://x",
                                        state=WorkerState.READY), load)
                  for wid, load in (("busy", 3), ("idle", 0)))
    return ClusterSnapshot((hive,), views)


def rounds_for(cpu_seconds: float) -> int:
    """HEAVY's rounds that take about `cpu_seconds` of CPU on this machine: a comparison is
    memory-bound, and memory bandwidth differs by machine (and by what else runs) fivefold."""
    probe = LuaPolicy(HEAVY.replace("ROUNDS", "50"), "probe")
    started = time.process_time()
    probe.route({"model": "m"}, [])
    per_round = max((time.process_time() - started) / 50, 1e-6)
    return max(1, int(cpu_seconds / per_round))


def heavy(rounds: int, wall: float) -> SchedulingPolicy:
    policy = SchedulingPolicy(wall_seconds=wall)
    policy.use(LuaPolicy(HEAVY.replace("ROUNDS", str(rounds)), "heavy"))
    return policy


async def ticks_while(work: asyncio.Future[object] | asyncio.Task[object]) -> int:
    """How often a 1 ms timer fired on the event loop while `work` ran."""
    count = 0
    while not work.done():
        await asyncio.sleep(0.001)
        count += 1
    return count


async def test_a_slow_script_decides_without_stalling_the_event_loop() -> None:
    policy = heavy(rounds=rounds_for(0.15), wall=30.0)  # within the script's 0.5 s of CPU
    started = time.perf_counter()
    decision = asyncio.ensure_future(policy.route(cluster(), RouteRequest("m")))
    ticks = await ticks_while(decision)
    elapsed = time.perf_counter() - started
    chosen, report = await decision
    # the script's answer (the busy worker, which least-loaded would never pick)...
    assert chosen is not None and chosen.info.id == "busy" and report.policy == "script:heavy"
    # ...while the loop kept running: on the loop, the timer could not have fired at all
    assert elapsed > 0.05 and ticks >= 10, (elapsed, ticks)
    policy.close()


async def test_the_wall_clock_limit_ends_the_wait_and_counts_a_failure() -> None:
    # ~15 s of work: the caller waits 0.1 s; the call itself ends at the CPU backstop (0.5 s)
    policy = heavy(rounds=100_000, wall=0.1)
    chosen, report = await policy.route(cluster(), RouteRequest("m"))
    assert chosen is not None and chosen.info.id == "idle"  # the built-in policy decided
    assert policy.stats.failures == 1
    assert "wall-clock limit (0.1 s) exceeded" in (policy.stats.last_error or "")
    assert any("script failed" in n and "built-in" in n for n in report.notes)
    # The call still runs on the script's thread (it ends by its own limits): the next
    # decision does not queue behind it for long, nor is its wait blamed on the script.
    chosen, report = await policy.route(cluster(), RouteRequest("m"))
    assert chosen is not None and chosen.info.id == "idle"
    assert policy.stats.busy == 1 and policy.stats.failures == 1
    assert any("busy with earlier decisions" in n for n in report.notes)
    policy.close()


async def test_a_script_failing_again_and_again_is_disabled_then_enabled_by_applying_it(
) -> None:
    policy = SchedulingPolicy(disable_after=3)
    script = LuaPolicy('function route(job, workers) error("boom") end', "broken")
    policy.use(script)
    reports = [(await policy.route(cluster(), RouteRequest("m")))[1] for _ in range(3)]
    assert policy.stats.failures == 3
    assert policy.stats.disabled is not None and "3 times in a row" in policy.stats.disabled
    assert "boom" in policy.stats.disabled
    assert not any("disabled" in n for n in reports[0].notes + reports[1].notes)
    assert any("script broken disabled" in n and "built-in policy decides" in n
               for n in reports[2].notes)  # narrated with the decision that tripped it
    # from now on the script is not asked: the built-in policy decides, with no failure
    chosen, report = await policy.route(cluster(), RouteRequest("m"))
    assert chosen is not None and report.policy == "least-loaded"
    assert policy.stats.calls == 3 and policy.deciding is None and policy.script is script
    assert policy.stats.to_dict()["disabled"] == policy.stats.disabled
    policy.use(script)  # applied again: a fresh chance
    assert policy.deciding is script and policy.stats.disabled is None
    policy.close()


async def test_an_answer_between_failures_resets_the_count() -> None:
    policy = SchedulingPolicy(disable_after=2)
    policy.use(LuaPolicy("n = 0\nfunction route(job, workers)\n  n = n + 1\n"
                         "  if n % 2 == 1 then error('odd') end\n  return nil\nend", "flaky"))
    for _ in range(6):
        await policy.route(cluster(), RouteRequest("m"))
    assert policy.stats.failures == 3 and policy.stats.disabled is None
    policy.close()


async def test_a_script_replaced_while_it_decides_is_not_disabled_on_its_behalf() -> None:
    policy = SchedulingPolicy(disable_after=1, wall_seconds=0.1)
    policy.use(LuaPolicy(HEAVY.replace("ROUNDS", "100000"), "slow"))
    deciding = asyncio.ensure_future(policy.route(cluster(), RouteRequest("m")))
    await asyncio.sleep(0.01)
    fresh = LuaPolicy("function route(job, workers) return nil end", "fresh")
    policy.use(fresh)  # hot reload while the old script is still running
    await deciding  # the old one overran: counted on its own (old) counters only
    assert policy.stats.failures == 0 and policy.stats.disabled is None
    assert policy.deciding is fresh
    policy.close()
