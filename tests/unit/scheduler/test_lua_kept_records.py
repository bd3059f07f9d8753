"""Static records kept in the Lua runtime between calls (lua.py `_Kept`, "Inputs" in
lua_helpers.lua): what a script sees stays exactly what the caller passed, call after call,
while the static half of each record crosses only when it changes."""

from __future__ import annotations

from typing import Any

import pytest

from rbee.scheduler import lua
from rbee.scheduler.lua import LuaPolicy, ScriptFailed
from tests.support.script_inputs import GiB, device, worker

JOB = {"model": "llama", "labels": {}}
MODEL = {"name": "llama", "size_bytes": GiB, "labels": {}}
DUMP_WORKER = """
function route(job, workers)
  for _, w in ipairs(workers) do
    log(w.id, w.hive_id, w.model, w.device, w.region, w.state, w.load, w.vram_free, w.labels.gpu)
  end
  return workers[1]
end"""


def dump(policy: LuaPolicy, workers: list[dict[str, Any]]) -> list[str]:
    assert policy.route(JOB, workers) == workers[0]["id"]
    return policy.last_log


def test_live_fields_change_every_call_and_static_ones_when_they_change() -> None:
    policy = LuaPolicy(DUMP_WORKER)
    gpu = {"gpu": "h100"}
    assert dump(policy, [worker("w1", load=1, labels=gpu)]) == [
        "w1 h1 llama cuda:0 nil ready 1 10737418240 h100"]
    assert dump(policy, [worker("w1", load=5, state="busy", vram_free=7, labels=gpu)]) == [
        "w1 h1 llama cuda:0 nil busy 5 7 h100"]
    # the worker moved region and its hive's labels changed (new telemetry: a new mapping)
    assert dump(policy, [worker("w1", region="eu", labels={"gpu": "a100"})]) == [
        "w1 h1 llama cuda:0 eu ready 0 10737418240 a100"]
    assert dump(policy, [worker("w1", labels=gpu)]) == [
        "w1 h1 llama cuda:0 nil ready 0 10737418240 h100"]


def test_a_subset_then_a_superset_of_known_records() -> None:
    policy = LuaPolicy(DUMP_WORKER)
    a, b, c = (worker(w, load=n) for n, w in enumerate(("wa", "wb", "wc")))
    assert dump(policy, [a, b, c]) == [f"{w} h1 llama cuda:0 nil ready {n} 10737418240 nil"
                                       for n, w in enumerate(("wa", "wb", "wc"))]
    assert dump(policy, [c]) == ["wc h1 llama cuda:0 nil ready 2 10737418240 nil"]
    d = worker("wd", model="qwen")
    assert dump(policy, [b, d, a]) == ["wb h1 llama cuda:0 nil ready 1 10737418240 nil",
                                       "wd h1 qwen cuda:0 nil ready 0 10737418240 nil",
                                       "wa h1 llama cuda:0 nil ready 0 10737418240 nil"]


def test_writes_to_a_record_end_with_the_call() -> None:
    src = """
    function place(model, devices)
      local d = devices[1]
      log(d.key, d.kind, d.memory_free, d.labels.gpu)
      d.kind = "forged"; d.memory_free = 0; d.labels.gpu = "x"; d.extra = 1
      log(d.kind, d.memory_free, d.labels.gpu, d.extra)
      return devices[1]
    end"""
    policy = LuaPolicy(src)
    devices = [device("h1/cuda:0", labels={"gpu": "h100"})]
    for _ in range(2):
        assert policy.place(MODEL, devices) == "h1/cuda:0"
        assert policy.last_log == ["h1/cuda:0 cuda 21474836480 h100", "forged 0 x 1"]


def test_pairs_lists_every_field_once_with_the_calls_own_writes() -> None:
    src = """
    function place(model, devices)
      local d = devices[1]
      d.name = "renamed"; d.extra = true
      local keys, n = {}, 0
      for k, v in pairs(d) do
        n = n + 1
        if type(v) ~= "table" then keys[#keys + 1] = k .. "=" .. tostring(v) end
      end
      table.sort(keys)
      log(n, table.concat(keys, " "))
      local f, s, init = pairs(d)
      local m, k = 0, next(d)
      while k ~= nil do m = m + 1; k = next(d, k) end
      log(type(f), s == d, init, m)
      return nil
    end"""
    policy = LuaPolicy(src)
    assert policy.place(MODEL, [device("h1/cuda:0", memory_total=8, memory_free=4)]) is None
    # 8 fields (region is nil) + labels + extra; `name` once, with the call's value; pairs
    # hands back the record itself as its state, so no way to the kept table
    assert policy.last_log == [
        "10 extra=true hive_id=h1 id=cuda:0 key=h1/cuda:0 kind=cuda memory_free=4 "
        "memory_total=8 name=renamed workers=0",
        "function true nil 10"]


def test_a_record_kept_by_the_script_reads_current_values_and_keeps_only_its_writes() -> None:
    src = """
    local old
    function route(job, workers)
      local w = workers[1]
      if old then log(old.id, old.load, old.tag, w.load, w.tag, old == w) end
      old = w
      old.tag = "mine"
      return old
    end"""
    policy = LuaPolicy(src)
    assert policy.route(JOB, [worker("w1", load=1)]) == "w1"
    assert policy.route(JOB, [worker("w1", load=2)]) == "w1"
    # the old record reads through to the kept fields (now load 2) and keeps its own write;
    # the new call got a new record, without the write
    assert policy.last_log == ["w1 2 mine 2 nil false"]


def test_the_same_record_twice_in_one_call() -> None:
    policy = LuaPolicy(DUMP_WORKER)
    assert dump(policy, [worker("w1", load=1), worker("w1", load=2)]) == [
        "w1 h1 llama cuda:0 nil ready 1 10737418240 nil",
        "w1 h1 llama cuda:0 nil ready 2 10737418240 nil"]


def test_unconvertible_inputs_fail_the_call_and_the_next_call_recovers() -> None:
    policy = LuaPolicy(DUMP_WORKER)
    ok = [worker("w1", labels={"gpu": "h100"})]
    assert dump(policy, ok) == ["w1 h1 llama cuda:0 nil ready 0 10737418240 h100"]
    bad_labels = {float("nan"): "x"}
    with pytest.raises(ScriptFailed, match="inputs not convertible"):
        policy.route(JOB, [worker("w2", labels=bad_labels)])
    with pytest.raises(ScriptFailed, match="inputs not convertible"):
        policy.route(JOB, [worker("w3", load=2**64)])
    with pytest.raises(ScriptFailed, match="inputs not convertible"):
        policy.route(JOB, [worker("w4", region=["unhashable"])])
    assert dump(policy, [*ok, worker("w5")]) == [
        "w1 h1 llama cuda:0 nil ready 0 10737418240 h100",
        "w5 h1 llama cuda:0 nil ready 0 10737418240 nil"]


def test_past_the_cap_everything_kept_is_dropped_and_sent_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lua, "KEPT_RECORDS", 8)
    policy = LuaPolicy(DUMP_WORKER)
    labels = {"gpu": "h100"}
    for call in range(6):  # 3 new workers a call: the cap is passed every few calls
        workers = [worker(f"w{call}-{i}", load=i, labels=labels) for i in range(3)]
        assert dump(policy, workers) == [
            f"w{call}-{i} h1 llama cuda:0 nil ready {i} 10737418240 h100" for i in range(3)]
        assert len(policy._kept["route"].slots) <= 8
    # more candidates than the cap in one call still work (the cap grows with the call)
    many = [worker(f"m{i}", load=i) for i in range(20)]
    assert dump(policy, many)[19] == "m19 h1 llama cuda:0 nil ready 19 10737418240 nil"


def test_a_new_report_with_the_same_values_sends_nothing_static_again() -> None:
    policy = LuaPolicy(DUMP_WORKER)
    for load in range(3):  # each "telemetry" brings new mappings with the same labels
        assert dump(policy, [worker("w1", load=load, labels={"gpu": "h100"})]) == [
            f"w1 h1 llama cuda:0 nil ready {load} 10737418240 h100"]
    kept = policy._kept["route"]
    assert len(kept.tokens) == 1 and len(kept.slots) == 1
    rows = lua._SHAPES["route"][1].rows([worker("w1", load=7, labels={"gpu": "h100"})])
    # no reset, no labels, no records: only the slot and the live fields cross
    assert kept.encode(rows) == ([False, 0, 0], [1, "ready", 7, 10 * GiB])


def test_a_record_nobody_wrote_to_is_handed_out_again() -> None:
    src = """
    local prev
    function place(model, devices)
      local d = devices[1]
      log(prev == d, d.memory_free)
      if d.memory_free == 1 then d.mark = true end
      prev = d
      return nil
    end"""
    policy = LuaPolicy(src)
    for free in (3, 2, 1, 0):
        policy.place(MODEL, [device("h1/cuda:0", memory_free=free)])
    # the same record while untouched (a script may key a cache by it); a new one after a write
    assert policy.last_log == ["false 0"]
    logs = []
    for free in (5, 6):
        policy.place(MODEL, [device("h1/cuda:0", memory_free=free)])
        logs += policy.last_log
    assert logs == ["true 5", "true 6"]


def test_many_candidates_arrive_whole_and_in_order() -> None:
    # more than one feeder call holds (45 workers or 60 devices each)
    src = """
    function route(job, workers)
      local ids = workers:ids()
      log(#workers, ids[1], ids[46], ids[#ids], workers[#workers].load)
      return workers[#workers]
    end"""
    policy = LuaPolicy(src)
    workers = [worker(f"w{i:03}", load=i) for i in range(130)]
    assert policy.route(JOB, workers) == "w129"
    assert policy.last_log == ["130 w000 w045 w129 129"]
    assert policy.route(JOB, workers[:46]) == "w045"
    assert policy.last_log == ["46 w000 w045 w045 45"]


def test_a_shorter_call_after_a_longer_one_sees_only_its_own_candidates() -> None:
    src = """
    function route(job, workers)
      local n = 0
      for _ in ipairs(workers) do n = n + 1 end
      log(#workers, n, workers[2] == nil)
      return nil
    end"""
    policy = LuaPolicy(src)
    policy.route(JOB, [worker("a"), worker("b"), worker("c")])
    assert policy.last_log == ["3 3 false"]
    policy.route(JOB, [worker("d")])
    assert policy.last_log == ["1 1 true"]


def test_a_list_the_script_grew_or_shrank_is_whole_again_next_call() -> None:
    src = """
    local calls = 0
    function place(model, devices)
      calls = calls + 1
      log(#devices, devices[1].key)
      if calls == 1 then table.insert(devices, devices[1]); devices.note = "x" end
      if calls == 2 then table.remove(devices, 1); table.remove(devices, 1) end
      return nil
    end"""
    policy = LuaPolicy(src)
    devices = [device("h1/cuda:0"), device("h1/cuda:1"), device("h2/cuda:0")]
    seen = []
    for _ in range(3):
        policy.place(MODEL, devices)
        seen += policy.last_log
    assert seen == ["3 h1/cuda:0", "3 h1/cuda:0", "3 h1/cuda:0"]
