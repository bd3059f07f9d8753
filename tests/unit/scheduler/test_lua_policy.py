"""LuaPolicy: the hook API, the data contract, the helper vocabulary and the example scripts."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from rbee.core.errors import InvalidRequest, RbeeError
from rbee.scheduler.lua import (
    MAX_SOURCE_BYTES,
    LuaPolicy,
    ScriptFailed,
    ScriptInvalid,
    ScriptLimits,
    ScriptRefused,
)
from tests.support.script_inputs import GiB, device, job, model, worker

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "scripts"


H100 = {"gpu": "h100"}
A100 = {"gpu": "a100"}
WORKERS = [
    worker("w1", load=3, labels=H100, region="eu-west", vram_free=5 * GiB),
    worker("w2", load=1, labels=H100, hive_id="h2", region="us-east", vram_free=9 * GiB),
    worker("w3", load=1, model="qwen", labels=A100, hive_id="h3", device="cuda:1"),
    worker("w4", load=0, state="loading", labels=A100, hive_id="h3", vram_free=1 * GiB),
    worker("w5", load=2, labels={"gpu": "a100", "spot": "yes"}, hive_id="h4", region="eu-north"),
]
DEVICES = [
    device("h1/cuda:0", memory_free=20 * GiB, labels={"gpu": "h100", "cost": "3.5"}, workers=2),
    device("h1/cuda:1", memory_free=6 * GiB, labels={"gpu": "h100", "cost": "3.5"}),
    device("h2/cuda:0", memory_free=30 * GiB, labels={"gpu": "a100", "cost": "1.25"},
           region="eu-central"),
    device("h2/cpu", kind="cpu", memory_free=50 * GiB, labels={"cost": "0.2"},
           region="eu-central"),
    device("h3/metal:0", kind="metal", memory_free=12 * GiB, region="us-west"),
]


def routes(body: str, j: dict[str, Any] | None = None) -> str | None:
    return LuaPolicy(f"function route(job, workers) {body} end").route(j or job(), WORKERS)


def logged(expr: str, hook: str = "route") -> str:
    """What `expr` evaluates to inside a hook, as logged text."""
    src = f"function {hook}(_, xs) log({expr}) end"
    policy = LuaPolicy(src)
    if hook == "route":
        policy.route(job(), WORKERS)
    else:
        policy.place(model(), DEVICES)
    assert len(policy.last_log) == 1
    return policy.last_log[0]


# --- the hook API ---------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "expected"), [
    ("return workers[2]", "w2"),
    ('return "w3"', "w3"),
    ("return nil", None),
    ("", None),
    ("return workers:with_model(job.model):least_loaded(), 'ignored'", "w4"),
])
def test_route_returns_the_chosen_worker_id(body: str, expected: str | None) -> None:
    assert routes(body) == expected


@pytest.mark.parametrize(("body", "expected"), [
    ("return devices[3]", "h2/cuda:0"),
    ('return "h3/metal:0"', "h3/metal:0"),
    ("return nil", None),
])
def test_place_returns_the_chosen_device_key(body: str, expected: str | None) -> None:
    policy = LuaPolicy(f"function place(model, devices) {body} end")
    assert policy.place(model(), DEVICES) == expected


@pytest.mark.parametrize(("body", "reason"), [
    ("return 42", "route returned a number"),
    ("return true", "route returned a boolean"),
    ("return print", "route returned a function"),
    ("return workers", "route returned a list"),
    ("return {}", "route returned a table without a string 'id'"),
    ("return job", "route returned a table without a string 'id'"),
    ('return "w9"', 'route returned unknown worker id "w9"'),
    ('return "h1/cuda:0"', 'route returned unknown worker id "h1/cuda:0"'),
    ('local w = workers[1]; w.id = "forged"; return w', 'unknown worker id "forged"'),
    ('error("no luck")', "s:1: no luck"),
])
def test_invalid_answers_raise_script_failed(body: str, reason: str) -> None:
    policy = LuaPolicy(f"function route(job, workers) {body} end", name="s")
    with pytest.raises(ScriptFailed, match="script 's': ") as info:
        policy.route(job(), WORKERS)
    assert reason in str(info.value)
    assert info.value.code == "script_failed"
    assert "\n" not in str(info.value)


def test_place_validates_against_device_keys_not_ids() -> None:
    policy = LuaPolicy('function place(model, devices) return "cuda:0" end')
    with pytest.raises(ScriptFailed, match='place returned unknown device key "cuda:0"'):
        policy.place(model(), DEVICES)


def test_a_missing_hook_has_no_opinion() -> None:
    policy = LuaPolicy("function place(model, devices) return devices[1] end", name="p")
    assert (policy.name, policy.has_route, policy.has_place) == ("p", False, True)
    assert policy.route(job(), WORKERS) is None
    assert policy.place(model(), DEVICES) == "h1/cuda:0"


@pytest.mark.parametrize(("source", "message"), [
    ("function route(job, workers) return", "script 's': s:1: 'end' expected"),
    ("\n\nlocal x = = 1", "s:3:"),
    ('error("bad config")', "s:1: bad config"),
    ("local x = nil + 1", "s:1: attempt to perform arithmetic on a nil value"),
    ("x = 1", "defines neither route(job, workers) nor place(model, devices)"),
    ("route = 5", "'route' is a number, not a function"),
    ("place = {}\nfunction route() end", "'place' is a table, not a function"),
    ("\x1bLua", "binary chunk"),
    ("-" * (MAX_SOURCE_BYTES + 1), "larger than"),
])
def test_invalid_scripts_raise_script_invalid(source: str, message: str) -> None:
    with pytest.raises(ScriptInvalid) as info:
        LuaPolicy(source, name="s")
    assert message in str(info.value)
    assert isinstance(info.value, InvalidRequest)
    assert info.value.code == "script_invalid"


def test_error_classes_fit_the_tree() -> None:
    assert issubclass(ScriptFailed, RbeeError)
    assert not issubclass(ScriptFailed, InvalidRequest)
    assert ScriptInvalid.http_status == 400


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="instructions"):
        ScriptLimits(instructions=0)
    with pytest.raises(ValueError, match="memory_bytes"):
        ScriptLimits(memory_bytes=1000)


# --- the data contract ----------------------------------------------------------------------

def test_scripts_see_every_contract_field() -> None:
    src = """
    function route(job, workers)
      local w = workers[1]
      log(job.model, job.tenant, job.priority, job.hive_id, job.device, job.labels.team)
      log(w.id, w.hive_id, w.model, w.device, w.state, w.load, w.vram_free, w.region, w.labels.gpu)
    end
    function place(model, devices)
      local d = devices[1]
      log(model.name, model.size_bytes, model.tenant, model.priority, model.labels.tier)
      log(d.key, d.hive_id, d.id, d.kind, d.name, d.memory_total, d.memory_free, d.region,
          d.labels.cost, d.workers)
    end"""
    policy = LuaPolicy(src)
    policy.route(job(tenant="acme", hive_id="h1", labels={"team": "ml"}), WORKERS)
    assert policy.last_log == ["llama acme interactive h1 nil ml",
                               f"w1 h1 llama cuda:0 ready 3 {5 * GiB} eu-west h100"]
    policy.place(model(tenant="acme", labels={"tier": "gold"}), DEVICES)
    assert policy.last_log == [f"llama {4 * GiB} acme batch gold",
                               f"h1/cuda:0 h1 cuda:0 cuda cuda:0 {24 * GiB} {20 * GiB} nil 3.5 2"]


def test_missing_fields_are_nil_and_missing_labels_an_empty_table() -> None:
    policy = LuaPolicy("function route(job, workers) local w = workers[1]\n"
                       "log(w.region, w.load, next(w.labels), next(job.labels)) return w end")
    assert policy.route({"model": "m"}, [{"id": "w1", "labels": None}]) == "w1"
    assert policy.last_log == ["nil nil nil nil"]


def test_inputs_are_copies_the_caller_never_sees_changes() -> None:
    workers = [worker("w1", labels={"gpu": "h100"}), worker("w2")]
    src = """
    function route(job, workers)
      log(workers[1].load, workers[1].labels.gpu, #workers)
      workers[1].load = 99; workers[1].labels.gpu = "x"; job.model = "other"
      table.remove(workers, 2)
      return workers[1]
    end"""
    policy = LuaPolicy(src)
    j = job()
    assert policy.route(j, workers) == "w1"
    assert policy.route(j, workers) == "w1"
    assert policy.last_log == ["0 h100 2"]  # the second call saw fresh copies
    assert workers == [worker("w1", labels={"gpu": "h100"}), worker("w2")]
    assert j == job()


def test_script_globals_persist_between_calls_of_one_policy() -> None:
    src = """
    local n = 0
    function route(job, workers)
      n = n % #workers + 1
      return workers[n]
    end"""
    policy = LuaPolicy(src)
    assert [policy.route(job(), WORKERS[:3]) for _ in range(4)] == ["w1", "w2", "w3", "w1"]


# --- helpers ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "expected"), [
    ('table.concat(xs:with_model("llama"):ids(), ",")', "w1,w2,w4,w5"),
    ('table.concat(xs:on_hive("h3"):ids(), ",")', "w3,w4"),
    ('table.concat(xs:in_region("eu-west"):ids(), ",")', "w1"),
    ('table.concat(xs:with_label("gpu", "a100"):ids(), ",")', "w3,w4,w5"),
    ('table.concat(xs:with_label("spot"):ids(), ",")', "w5"),
    ('table.concat(xs:idle():ids(), ",")', "w4"),
    ('table.concat(xs:ready():ids(), ",")', "w1,w2,w3,w5"),
    ("table.concat(xs:filter(function(w) return w.load > 1 end):ids(), ',')", "w1,w5"),
    ("table.concat(xs:sort_by(function(w) return w.load end):ids(), ',')", "w4,w2,w3,w5,w1"),
    ("table.concat(xs:sort_by(function(w) return -w.vram_free end):ids(), ',')",
     "w3,w5,w2,w1,w4"),
    ("xs:least_loaded().id", "w4"),
    ("xs:ready():least_loaded().id", "w2"),  # w2 and w3 tie on load: smaller id wins
    ("xs:most_vram_free().id", "w3"),  # w3 and w5 tie on vram_free: smaller id wins
    ("xs:first().id", "w1"),
    ('xs:with_model("none"):first()', "nil"),
    ('xs:with_model("none"):least_loaded()', "nil"),
    ("xs:count(), #xs", "5 5"),
    ('xs:with_model("none"):empty(), xs:empty()', "true false"),
    ('xs:ready():with_label("gpu", "h100"):in_region("us-east"):count()', "1"),
    ("xs:ready()", "<list of 4>"),
])
def test_worker_helpers(expr: str, expected: str) -> None:
    assert logged(expr) == expected


@pytest.mark.parametrize(("expr", "expected"), [
    ('table.concat(xs:kind("cuda"):ids(), ",")', "h1/cuda:0,h1/cuda:1,h2/cuda:0"),
    (f'table.concat(xs:fits({12 * GiB}):ids(), ",")', "h1/cuda:0,h2/cuda:0,h2/cpu,h3/metal:0"),
    ("xs:most_vram_free().key", "h2/cpu"),
    ('xs:kind("cuda"):most_vram_free().key', "h2/cuda:0"),
    ("xs:least_loaded().key", "h1/cuda:1"),  # by workers: four devices tie at 0
    ('table.concat(xs:with_label("cost", "3.5"):ids(), ",")', "h1/cuda:0,h1/cuda:1"),
    ('xs:on_hive("h3"):first().name', "metal:0"),
])
def test_device_helpers(expr: str, expected: str) -> None:
    assert logged(expr, hook="place") == expected


def test_lists_work_with_ipairs_length_and_table_functions() -> None:
    src = """
    function route(job, workers)
      local seen = {}
      for i, w in ipairs(workers) do seen[#seen + 1] = i .. "=" .. w.id end
      local ready = workers:ready()
      table.sort(ready, function(a, b) return a.id > b.id end)
      log(table.concat(seen, " "), #workers, ready[1].id, select("#", table.unpack(ready)))
      return ready[#ready]
    end"""
    policy = LuaPolicy(src)
    assert policy.route(job(), WORKERS) == "w1"
    assert policy.last_log == ["1=w1 2=w2 3=w3 4=w4 5=w5 5 w5 4"]


@pytest.mark.parametrize(("arg", "expected"), [
    ('"h2/cuda:0"', 9 * GiB),  # hive_id/device
    ('"cuda:1"', 10 * GiB),  # a bare device id: the first worker on it
    ('"cuda:0"', 5 * GiB),
    ('"nowhere"', 0),
    ("workers[5]", 10 * GiB),
])
def test_gpu_vram_free_in_route(arg: str, expected: int) -> None:
    policy = LuaPolicy(f"function route(job, workers) log(gpu_vram_free({arg})) end")
    policy.route(job(), WORKERS)
    assert policy.last_log == [str(expected)]


def test_gpu_vram_free_in_place_uses_the_call_s_devices() -> None:
    src = ('function place(model, devices) log(gpu_vram_free("h2/cpu"), gpu_vram_free("metal:0"),'
           ' gpu_vram_free("h9/cuda:0")) end')
    policy = LuaPolicy(src)
    policy.place(model(), DEVICES)
    assert policy.last_log == [f"{50 * GiB} {12 * GiB} 0"]
    policy.place(model(), DEVICES[:1])
    assert policy.last_log == ["0 0 0"]


def test_log_is_per_call_capped_and_accepts_any_value() -> None:
    src = """
    function route(job, workers)
      if job.model == "quiet" then return end
      print("x", 1.5, true, nil, {}, workers, print)
      log(("%d"):format(7), ("y"):upper() .. string.char(10) .. "z")
      local long = "0123456789"
      for _ = 1, 5 do long = long .. long end
      for i = 1, 40 do log(i, long) end
    end"""
    policy = LuaPolicy(src)
    policy.route(job(), WORKERS)
    assert policy.last_log[:2] == ["x 1.5 true nil <table> <list of 5> <function>", "7 Y z"]
    assert len(policy.last_log) == 20
    assert all(len(line) <= 200 for line in policy.last_log)
    policy.route(job(model="quiet"), WORKERS)
    assert policy.last_log == []


def test_top_level_log_lines_are_kept() -> None:
    policy = LuaPolicy('log("loaded", 3)\nfunction route() end')
    assert policy.last_log == ["loaded 3"]


# --- example scripts ------------------------------------------------------------------------

def example(name: str) -> LuaPolicy:
    return LuaPolicy((EXAMPLES / name).read_text(), name=name)


def test_every_example_loads() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.lua"))
    assert names == ["affinity_by_size.lua", "cheapest_first.lua", "enterprise_gpus.lua",
                     "eu_only.lua", "power_save.lua"]
    for name in names:
        text = (EXAMPLES / name).read_text()
        assert text.startswith(f"-- {name}: ")
        assert example(name).has_place


@pytest.mark.parametrize(("j", "expected"), [
    (job(tenant="enterprise"), "w2"),
    (job(labels={"tier": "enterprise"}), "w2"),
    (job(tenant="hobby"), "w5"),  # w4 (a100, idle) is still loading
    (job(tenant="enterprise", model="qwen"), None),  # no H100 worker serves qwen: fall back
])
def test_enterprise_gpus_route(j: dict[str, Any], expected: str | None) -> None:
    assert example("enterprise_gpus.lua").route(j, WORKERS) == expected


@pytest.mark.parametrize(("m", "expected"), [
    (model(tenant="enterprise"), "h1/cuda:0"),
    (model(), "h2/cuda:0"),
    (model(tenant="enterprise", size_bytes=25 * GiB), None),
])
def test_enterprise_gpus_place(m: dict[str, Any], expected: str | None) -> None:
    assert example("enterprise_gpus.lua").place(m, DEVICES) == expected


def test_eu_only() -> None:
    policy = example("eu_only.lua")
    assert policy.route(job(), WORKERS) == "w5"  # w1 is busier
    # nothing in the EU: refused outright (`return false`), never handed to a fallback
    with pytest.raises(ScriptRefused, match="refused all 5 candidate"):
        policy.route(job(model="qwen"), WORKERS)
    assert policy.place(model(), DEVICES) == "h2/cpu"
    assert policy.place(model(size_bytes=40 * GiB), DEVICES) == "h2/cpu"
    with pytest.raises(ScriptRefused):
        policy.place(model(size_bytes=60 * GiB), DEVICES)
    assert policy.route(job(), WORKERS) == "w5"  # still usable after a refusal


@pytest.mark.parametrize(("size", "expected"), [
    (9 * GiB, "h2/cuda:0"),
    (4 * GiB, "h2/cpu"),
    (55 * GiB, None),
])
def test_affinity_by_size(size: int, expected: str | None) -> None:
    assert example("affinity_by_size.lua").place(model(size_bytes=size), DEVICES) == expected


def test_affinity_by_size_uses_metal_when_the_cpu_is_full() -> None:
    devices = [d | {"memory_free": GiB} if d["kind"] == "cpu" else d for d in DEVICES]
    assert example("affinity_by_size.lua").place(model(), devices) == "h3/metal:0"


@pytest.mark.parametrize(("size", "expected"), [
    (4 * GiB, "h2/cpu"),
    (40 * GiB, "h2/cpu"),
    (60 * GiB, None),
])
def test_cheapest_first(size: int, expected: str | None) -> None:
    assert example("cheapest_first.lua").place(model(size_bytes=size), DEVICES) == expected


def test_cheapest_first_skips_full_devices_and_ranks_unlabelled_last() -> None:
    devices = [d for d in DEVICES if d["key"] != "h2/cpu"]
    assert example("cheapest_first.lua").place(model(size_bytes=25 * GiB), devices) == \
        "h2/cuda:0"
    assert example("cheapest_first.lua").place(model(), devices[-1:]) == "h3/metal:0"


@pytest.mark.parametrize(("size", "expected"), [
    (4 * GiB, "h1/cuda:1"),  # h1 already runs workers: its fullest device that fits
    (8 * GiB, "h1/cuda:0"),
    (25 * GiB, "h2/cuda:0"),  # nothing on h1 fits: the fullest device anywhere
])
def test_power_save(size: int, expected: str) -> None:
    assert example("power_save.lua").place(model(size_bytes=size), DEVICES) == expected


# --- cost -----------------------------------------------------------------------------------

def test_a_route_over_1000_workers_stays_cheap() -> None:
    labels = [{"gpu": "h100", "rack": str(i)} for i in range(10)]
    workers = [worker(f"w{i:04}", hive_id=f"h{i % 10}", load=i % 7, labels=labels[i % 10],
                      model="llama" if i % 2 else "qwen") for i in range(1000)]
    policy = LuaPolicy("function route(job, workers)\n"
                       "  return workers:with_model(job.model):ready():least_loaded()\nend")
    j = job()
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        chosen = policy.route(j, workers)
        timings.append(time.perf_counter() - start)
    assert chosen == "w0007"
    # A guard against a pathological cost (a copy per worker per call), generous for a
    # loaded 2-core machine; the target itself (p99 <= 1 ms) is bench/scheduler.py's.
    assert statistics.median(timings) < 0.02
