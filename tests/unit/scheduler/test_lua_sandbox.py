"""The Lua sandbox: escape attempts, limits, and recovery after every kind of failure.

Each hostile script attacks only when the job's model is "evil", so the same policy object
must answer a normal call right after the failed one.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from rbee.scheduler.lua import LuaPolicy, ScriptFailed, ScriptInvalid, ScriptLimits

FAST = ScriptLimits(instructions=200_000, memory_bytes=8 * 2**20, cpu_seconds=0.2)
WORKERS = [{"id": "w1", "hive_id": "h1", "model": "m", "device": "cuda:0", "state": "ready",
            "load": 0, "vram_free": 1, "region": None, "labels": {"gpu": "h100"}},
           {"id": "w2", "hive_id": "h1", "model": "m", "device": "cuda:1", "state": "ready",
            "load": 1, "vram_free": 1, "region": None, "labels": {"gpu": "h100"}}]
DEVICES = [{"key": "h1/cuda:0", "hive_id": "h1", "id": "cuda:0", "kind": "cuda", "name": "x",
            "memory_total": 10, "memory_free": 5, "region": None, "labels": {}, "workers": 0}]
NORMAL = {"model": "m", "labels": {}}
EVIL = {"model": "evil", "labels": {}}


def hostile(attack: str, limits: ScriptLimits = FAST) -> LuaPolicy:
    src = ("function route(job, workers)\n"
           f"  if job.model == 'evil' then\n{attack}\n  end\n"
           "  return workers:least_loaded()\nend")
    return LuaPolicy(src, name="evil", limits=limits)


def assert_contained(policy: LuaPolicy, reason: str, job: dict[str, Any] = EVIL) -> None:
    """The attack fails with `reason`, and the same policy then routes normally."""
    with pytest.raises(ScriptFailed) as info:
        policy.route(job, WORKERS)
    message = str(info.value)
    assert message.startswith("script 'evil': ")
    assert reason in message
    assert "\n" not in message
    assert policy.route(NORMAL, WORKERS) == "w1"


def returns(policy: LuaPolicy, job: dict[str, Any] = EVIL) -> str | None:
    return policy.route(job, WORKERS)


# --- the environment: what scripts cannot reach ------------------------------------------------

@pytest.mark.parametrize(("attack", "reason"), [
    ('io.open("/etc/passwd")', "attempt to index a nil value (global 'io')"),
    ('os.execute("touch /tmp/pwned")', "attempt to index a nil value (global 'os')"),
    ('require("os")', "attempt to call a nil value (global 'require')"),
    ('load("return 1")()', "attempt to call a nil value (global 'load')"),
    ('loadstring("return 1")()', "attempt to call a nil value (global 'loadstring')"),
    ('dofile("/etc/passwd")', "attempt to call a nil value (global 'dofile')"),
    ('loadfile("/etc/passwd")', "attempt to call a nil value (global 'loadfile')"),
    ('python.eval("1")', "attempt to index a nil value (global 'python')"),
    ("python.builtins.open('/etc/passwd')", "attempt to index a nil value (global 'python')"),
    ('("x"):rep(1e9)', "attempt to call a nil value (method 'rep')"),
    ('string.rep("x", 1e9)', "attempt to call a nil value (field 'rep')"),
    ("string.dump(print)", "attempt to call a nil value (field 'dump')"),
    ('debug.sethook()', "attempt to index a nil value (global 'debug')"),
    ('collectgarbage("stop")', "attempt to call a nil value (global 'collectgarbage')"),
    ("coroutine.wrap(function() end)()", "attempt to index a nil value (global 'coroutine')"),
    ("getmetatable(workers).__index = nil", "attempt to call a nil value (global 'getmetatable')"),
    ("setmetatable(workers, nil)", "attempt to call a nil value (global 'setmetatable')"),
    ('rawget(_G, "os")', "attempt to call a nil value (global 'rawget')"),
    ('rawset(_G, "x", 1)', "attempt to call a nil value (global 'rawset')"),
    ("rawequal(1, 1)", "attempt to call a nil value (global 'rawequal')"),
    ("xpcall(print, print)", "attempt to call a nil value (global 'xpcall')"),
    ("math.randomseed(1)", "attempt to call a nil value (field 'randomseed')"),
    ("error(setmetatable({}, {__tostring = function() while true do end end}))",
     "attempt to call a nil value (global 'setmetatable')"),
])
def test_dangerous_globals_are_absent(attack: str, reason: str) -> None:
    assert_contained(hostile(attack), reason)


@pytest.mark.parametrize("expr", [
    "_ENV.os", "_G.io", "_G.python", "_ENV.debug", "string.rep", "('x').rep", "('').dump",
    "workers.__index", "workers.__metatable", "workers[1].__index", "getmetatable",
    "table.move", "utf8.codepoint and nil", "_G._G.load",
])
def test_nothing_dangerous_is_reachable_by_indexing(expr: str) -> None:
    assert returns(hostile(f"if {expr} ~= nil then return 'w2' end return 'w1'")) == "w1"


def test_globals_written_through_g_stay_in_the_script_s_env() -> None:
    writer = hostile("_G.os = 'mine'; string.find = nil; return _ENV.os == 'mine' and 'w2'")
    assert returns(writer) == "w2"
    other = hostile("if os ~= nil or string.find == nil then return 'w2' end")
    assert returns(other) == "w1"
    # the string methods a script sees through s:find() are not its env's string table
    assert returns(hostile("string.find = nil; return ('w2'):find('w') and 'w2'")) == "w2"


def test_each_policy_has_its_own_state() -> None:
    a = LuaPolicy("secret = 42\nfunction route(job, workers) return workers[1] end")
    b = LuaPolicy("function route(job, workers) log(secret, _G.secret) return nil end")
    assert a.route(NORMAL, WORKERS) == "w1"
    assert b.route(NORMAL, WORKERS) is None
    assert b.last_log == ["nil nil"]


def test_helper_lists_do_not_expose_their_metatable() -> None:
    policy = hostile("""
      local keys = {}
      for k in pairs(workers) do keys[#keys + 1] = tostring(k) end
      log(table.concat(keys, ","), tostring(workers):match("^rbee.list"), workers.filter ~= nil)
      workers.filter = nil
      log(workers:ready():count())""")
    assert returns(policy) == "w1"
    assert policy.last_log == ["1,2 rbee.list true", "2"]


# --- Python objects ---------------------------------------------------------------------------

@pytest.mark.parametrize(("attack", "reason"), [
    ("return job.labels.obj.__class__", "Python objects are not available to scripts"),
    ("job.labels.obj.x = 1", "Python objects are not available to scripts"),
    ("return job.labels.obj()", "Python objects are not available to scripts"),
    ("return job.labels.fn('rm -rf /')", "Python objects are not available to scripts"),
    ("return job.labels.obj", "route returned a userdata"),
    ("error(job.labels.obj)", "error object of type userdata"),
])
def test_python_objects_in_the_data_are_inert(attack: str, reason: str) -> None:
    calls: list[object] = []
    evil = {"model": "evil", "labels": {"obj": object(), "fn": calls.append}}
    assert_contained(hostile(attack), reason, job=evil)
    assert calls == []


def test_python_objects_print_without_running_python() -> None:
    class Loud:
        def __repr__(self) -> str:
            raise AssertionError("repr ran")

    policy = hostile("log(tostring(job.labels.obj), job.labels.obj)")
    assert returns(policy, {"model": "evil", "labels": {"obj": Loud()}}) == "w1"
    assert policy.last_log == ["<python object> <userdata>"]


# --- the instruction budget -------------------------------------------------------------------

@pytest.mark.parametrize("attack", [
    "while true do end",
    "local function f() return f() end return f()",  # tail calls: no stack growth
    "while true do pcall(function() while true do end end) end",
    "while true do pcall(error, 'x') end",
    "local function f() pcall(f); pcall(f) end while true do f() end",
    "for _ = 1, 1e9 do local _ = workers:ready() end",
    "local t = {} for i = 1, 1e9 do t[i % 100 + 1] = i end",
    "table.sort({3, 2, 1}, function(a, b) while true do end end)",
    ("local s = ('a'):upper() .. 'b' local n = 0\n"
     "while true do pcall(string.gsub, s, '.', function() while true do n = n + 1 end end) end"),
])
def test_runaway_code_is_stopped_by_the_budget(attack: str) -> None:
    assert_contained(hostile(attack), "instruction budget exhausted (200000)")


def test_the_budget_counts_instructions() -> None:
    policy = hostile("local x = 0 for i = 1, tonumber(job.tenant) do x = x + i end",
                     ScriptLimits(instructions=100_000))
    assert returns(policy, {"model": "evil", "tenant": "20000"}) == "w1"
    with pytest.raises(ScriptFailed, match="instruction budget exhausted"):
        returns(policy, {"model": "evil", "tenant": "200000"})


def test_the_budget_is_per_call() -> None:
    policy = hostile("local x = 0 for i = 1, 30000 do x = x + i end",
                     ScriptLimits(instructions=100_000))
    assert [returns(policy) for _ in range(20)] == ["w1"] * 20


def test_a_caught_budget_error_cannot_run_more_code() -> None:
    policy = hostile("""
      local ok, err = pcall(function() while true do end end)
      log("survived", err)
      return 'w2'""")
    assert_contained(policy, "instruction budget exhausted")
    assert policy.last_log == []


def test_top_level_code_is_budgeted() -> None:
    with pytest.raises(ScriptInvalid, match=r"script 'x': instruction budget exhausted \(1000\)"):
        LuaPolicy("while true do end", name="x", limits=ScriptLimits(instructions=1000))


# --- C functions the hook cannot see ------------------------------------------------------------

@pytest.mark.parametrize(("attack", "reason"), [
    # exponential backtracking: one C call, no hook runs inside it
    ("local s = 'a' for _ = 1, 5 do s = s .. s end\n"
     "return s:find(('a?'):upper():lower():gsub('A', 'a'):sub(1, 2):gsub('.', '%0') .. "
     "string.gsub(s, 'a', 'a?') .. s .. 'b')",
     "'find': pattern too expensive for a 32-byte subject"),
    ("local s = 'x' for _ = 1, 12 do s = s .. s end return s:match('.-.-.-.-y')",
     "'match': pattern too expensive"),
    ("local s = 'x' for _ = 1, 12 do s = s .. s end return s:gsub('(x*)*y', '')",
     "'gsub': pattern too expensive"),
    ("local p = 'a' for _ = 1, 9 do p = p .. p end for _ in ('a'):gmatch(p) do end",
     "pattern longer than 256 bytes"),
    ("local t = {} for i = 1, 50000 do t[i] = i end\n"
     "while true do table.insert(t, 1, 0); table.remove(t, 1) end",
     "instruction budget exhausted"),
    ("local t = {} for i = 1, 50000 do t[i] = -i end while true do table.sort(t) end",
     "instruction budget exhausted"),
    ("local t = {} for i = 1, 20000 do t[i] = i end return table.unpack(t)",
     "'unpack' would return 20000 values (max 10000)"),
    ("return table.unpack({}, 1, 1e8)", "'unpack' would return 100000000 values"),
    ("local s = 'x' for _ = 1, 15 do s = s .. s end return s:byte(1, -1)",
     "'byte' would return 32768 values"),
    ("local s = 'x' for _ = 1, 15 do s = s .. s end return utf8.codepoint(s, 1, -1)",
     "'codepoint' would return 32768 values"),
])
def test_c_functions_are_charged_or_refused(attack: str, reason: str) -> None:
    assert_contained(hostile(attack), reason)


def test_ordinary_patterns_are_cheap() -> None:
    policy = hostile("""
      local hits = 0
      for i = 1, 500 do
        if ("eu-west-1"):find("^eu") and ("cost=0.8"):match("cost=([%d%.]+)")
           and ("h100,a100"):gsub(",", " ") and ("a b c"):find(" ", 1, true) then
          hits = hits + 1
        end
      end
      log(hits, ("w2"):byte(1, -1))
      return "w2" """)
    assert returns(policy) == "w2"
    assert policy.last_log == ["500 119 50"]


def test_deep_stacks_make_errors_costly_and_hit_the_cpu_time_backstop() -> None:
    # each error caught by pcall costs Lua O(stack depth): 5 instructions, 100,000 frames
    policy = hostile("""
      local function dig(n)
        if n == 0 then while true do pcall(error, 'x') end end
        return 1 + dig(n - 1)
      end
      dig(100000)""", ScriptLimits(instructions=10**9, cpu_seconds=0.1))
    start = time.process_time()
    assert_contained(policy, "CPU time limit (0.1 s) exceeded")
    assert time.process_time() - start < 2


def test_pcall_nesting_is_capped() -> None:
    policy = hostile("""
      local depth = 0
      local function f()
        depth = depth + 1
        local ok, err = pcall(f)
        if not ok then error(err, 0) end
      end
      local ok, err = pcall(f)
      log(depth, err)""")
    assert returns(policy) == "w1"
    assert policy.last_log[0].startswith("100 evil:")
    assert policy.last_log[0].endswith("pcall nested deeper than 100")


def test_operand_sized_instructions_hit_the_cpu_time_backstop() -> None:
    # `==` on two equal 4 MiB strings is one instruction but a 4 MiB memcmp
    policy = hostile("""
      local a = "x" for _ = 1, 22 do a = a .. a end
      local b = a:sub(1)
      while true do local _ = (a == b) end""",
                     ScriptLimits(instructions=10**9, memory_bytes=32 * 2**20, cpu_seconds=0.1))
    start = time.process_time()
    assert_contained(policy, "CPU time limit (0.1 s) exceeded")
    assert time.process_time() - start < 2


# --- memory -----------------------------------------------------------------------------------

BIG = ScriptLimits(instructions=10**8, memory_bytes=4 * 2**20, cpu_seconds=2)


@pytest.mark.parametrize("attack", [
    "local s = 'x' while true do s = s .. s end",
    "local t = {} local i = 0 while true do i = i + 1; t[i] = {i} end",
    "local function f() return 1 + f() end return f()",
    ("local t = {} for i = 1, 10 do\n"
     "  pcall(function() local s = 'x' while true do s = s .. s end end) end\n"
     "local s = 'y' while true do s = s .. s end"),
])
def test_memory_bombs_hit_the_cap(attack: str) -> None:
    assert_contained(hostile(attack, BIG), "memory limit (4 MiB) exceeded")


def test_a_memory_error_caught_with_pcall_leaves_the_call_running() -> None:
    policy = hostile("""
      local ok, err = pcall(function() local s = 'x' while true do s = s .. s end end)
      log(ok, err)
      return 'w2'""", BIG)
    assert returns(policy) == "w2"
    assert policy.last_log == ["false not enough memory"]


def test_a_script_that_hoards_memory_fails_its_calls_but_never_crashes_the_process() -> None:
    # lupa converts arguments outside Lua's protection, where a failed allocation aborts the
    # process ("PANIC: unprotected error in call to Lua API"): conversion must never hit the cap
    policy = hostile("""
      hoard = hoard or {}
      pcall(function() while true do hoard[#hoard + 1] = {} end end)""", BIG)
    assert returns(policy) == "w1"
    many = [w | {"id": f"worker-{i}", "labels": {"n": str(i)}}
            for i in range(5000) for w in WORKERS[:1]]
    for _ in range(3):
        with pytest.raises(ScriptFailed, match=r"memory limit \(4 MiB\) exceeded"):
            policy.route(EVIL, many)


def test_top_level_memory_bomb_is_invalid() -> None:
    with pytest.raises(ScriptInvalid, match=r"memory limit \(4 MiB\) exceeded"):
        LuaPolicy("local s = 'x' while true do s = s .. s end", limits=BIG)


# --- error objects and answers ------------------------------------------------------------------

@pytest.mark.parametrize(("attack", "reason"), [
    ("error(workers)", "error object of type table"),
    ("error({message = 'x'})", "error object of type table"),
    ("error(print)", "error object of type function"),
    ("error(nil)", "error(nil)"),
    ("error(42)", "error(42)"),
    ("error('line one\\nline two')", "evil:3: line one line two"),
    ("error('\\255\\254 bytes')", "evil:3: ?? bytes"),
    ("local s = 'x' for _ = 1, 10 do s = s .. s end error(s)", "evil:3: xxxx"),
    ("return print", "route returned a function"),
    ("return job.labels.obj", "route returned a userdata"),
    ("return workers", "route returned a list"),
    ("return '\\255'", 'route returned unknown worker id "?"'),
])
def test_error_objects_and_answers_are_reported_safely(attack: str, reason: str) -> None:
    evil = {"model": "evil", "labels": {"obj": object()}}
    policy = hostile(attack)
    with pytest.raises(ScriptFailed) as info:
        policy.route(evil, WORKERS)
    assert reason in str(info.value)
    assert len(str(info.value)) < 400
    assert policy.route(NORMAL, WORKERS) == "w1"


def test_place_failures_leave_the_policy_usable() -> None:
    src = """
    function place(model, devices)
      if model.name == "evil" then while true do end end
      return devices[1]
    end"""
    policy = LuaPolicy(src, limits=FAST)
    with pytest.raises(ScriptFailed, match="instruction budget exhausted"):
        policy.place({"name": "evil"}, DEVICES)
    assert policy.place({"name": "ok"}, DEVICES) == "h1/cuda:0"
