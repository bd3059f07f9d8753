-- The trusted half of rbee's Lua scheduling sandbox (see rbee/scheduler/lua.py).
--
-- lua.py runs this chunk once per LuaRuntime, before any user code, as
--   entry = chunk(config, probe)
-- It keeps the real debug, coroutine, load and metatable functions in locals that no script
-- can reach, neuters lupa's wrapper for Python objects, builds the whitelisted environment
-- scripts run in, empties the real globals, and returns the entry points lua.py calls:
--   entry.stage(source, name)           keep the script's source for compile()
--   entry.compile()                     -> status, text, has_route, has_place, log lines...
--   entry.prepare(hook, n, ...)         build this call's inputs for decide()
--   entry.decide()                      -> status, text, log lines...
-- status is "ok", "error", "budget", "time" or "memory"; lua.py turns the others into errors.
-- stage and prepare run without a memory limit and take every argument; compile and decide,
-- which run the script under the limit, take none (see LuaPolicy._unlimited in lua.py).
--
-- Rules for this file: no global reads after set-up (the real globals are emptied at the end,
-- so a slip fails loudly in the tests), and no method calls on strings (the string metatable's
-- __index is the script-visible string table, which a script may have changed).

local config, probe = ...

local debug_sethook, debug_getmetatable = debug.sethook, debug.getmetatable
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local load, pairs, ipairs, next, select = load, pairs, ipairs, next, select
local type, tostring, tonumber, error = type, tostring, tonumber, error
local setmetatable, rawget, rawset, assert, pcall = setmetatable, rawget, rawset, assert, pcall
local clock, collectgarbage = os.clock, collectgarbage
local s_find, s_gsub, s_sub, s_len = string.find, string.gsub, string.sub, string.len
local s_format, s_byte, s_match, s_gmatch = string.format, string.byte, string.match, string.gmatch
local t_insert, t_remove, t_sort = table.insert, table.remove, table.sort
local t_concat, t_unpack = table.concat, table.unpack
local u_len, u_codepoint = utf8.len, utf8.codepoint
local m_floor, m_log = math.floor, math.log

local BUDGET = config.instructions
local STEP = config.step                -- instructions between two hook calls
local SECONDS = config.cpu_seconds      -- CPU-time backstop, checked at every hook call
local LOG_LINES, LOG_CHARS = config.log_lines, config.log_chars
local MAX_RESULTS = config.max_results  -- values one table.unpack/string.byte may return
local MAX_PATTERN = config.max_pattern  -- bytes in a Lua pattern
local MAX_PCALLS = config.max_pcalls    -- pcalls nested in one another
local MEMERR = "not enough memory"      -- the error object Lua raises when an allocation fails

-- Per-call state. A LuaRuntime belongs to one LuaPolicy and runs one call at a time.
local used, extra, started, dead, current, pcalls = 0, 0, 0, nil, nil, 0
local logs, nlogs = {}, 0
local inputs, vram = nil, nil           -- this call's workers/devices; gpu_vram_free's index

---------------------------------------------------------------------------------------------
-- Budget. The count hook fires every STEP instructions of the call's coroutine. Once the
-- budget is spent the hook is re-armed to fire before *every* instruction and raise, so a
-- script that catches the error with pcall cannot run another instruction in this call.
---------------------------------------------------------------------------------------------

local function on_dead() error(dead, 0) end

local function kill(reason)
  dead = reason
  if current ~= nil then debug_sethook(current, on_dead, "", 1) end
  error(reason, 0)
end

local function on_count()
  used = used + STEP
  if used + extra >= BUDGET then kill("budget") end
  if clock() - started > SECONDS then kill("time") end
end

-- C functions run without hooks: the wrappers below charge their cost up front.
local function charge(n)
  extra = extra + n
  if used + extra >= BUDGET then kill("budget") end
end

local function clean(s, max)
  if s_len(s) > max then s = s_sub(s, 1, max) end
  s = s_gsub(s, "%c", " ")
  if not u_len(s) then s = s_gsub(s, "[\128-\255]", "?") end
  return s
end

local function describe(e)
  local t = type(e)
  if t == "string" then return clean(e, 300) end
  if t == "number" or t == "boolean" or t == "nil" then return "error(" .. tostring(e) .. ")" end
  return "error object of type " .. t   -- never tostring() a table: no metamethod runs here
end

-- Each error caught by a pcall costs Lua O(stack depth) (luaD_shrinkstack walks every frame),
-- so unbounded pcall nesting makes unwinding quadratic: 120,000 nested pcalls took 30 s to
-- unwind after the budget ran out. The script's pcall is capped in depth and, once the call is
-- dead, re-raises instead of returning false.
local function pcall_exit(...)
  pcalls = pcalls - 1
  if dead ~= nil then error(dead, 0) end
  return ...
end

local function safe_pcall(f, ...)
  if dead ~= nil then error(dead, 0) end
  if pcalls >= MAX_PCALLS then error(s_format("pcall nested deeper than %d", MAX_PCALLS), 2) end
  pcalls = pcalls + 1
  return pcall_exit(pcall(f, ...))
end

-- Calls run in a coroutine that loops: after a call that returned, it waits (yields) for the
-- next one, so a decision does not leave a dead coroutine behind for the collector. One that
-- failed or was killed is dead, and the next call starts a new one. Scripts cannot yield (no
-- coroutine library), so the only yield is this loop's.
local function loop(fn, a, b)
  while true do
    local result = fn(a, b)
    fn, a, b = nil, nil, nil   -- keep nothing of this call alive while parked
    fn, a, b = co_yield(result)
  end
end

local parked = nil

-- Runs fn(a, b) in a hooked coroutine: status, first result or error text.
local function run(fn, a, b)
  used, extra, dead, started, pcalls = 0, 0, nil, clock(), 0
  local co = parked or co_create(loop)
  parked = nil
  debug_sethook(co, on_count, "", STEP)   -- also restarts the hook's count
  current = co
  local ok, result = co_resume(co, fn, a, b)
  current = nil
  if dead ~= nil then return dead end
  if not ok then
    if result == MEMERR then collectgarbage("collect"); return "memory" end
    return "error", describe(result)
  end
  parked = co
  return "ok", result
end

---------------------------------------------------------------------------------------------
-- Lists: the workers/devices a hook receives, with chainable helpers.
---------------------------------------------------------------------------------------------

local methods = {}   -- reachable only through List.__index, which scripts cannot read
local List = {__index = methods, __name = "rbee.list", __metatable = "rbee.list"}

local function new_list(t) return setmetatable(t, List) end
local function is_list(x) return debug_getmetatable(x) == List end

local function ident(x) return x.key or x.id or "" end
-- A worker's load per request it serves at once (`slots`), so that :least_loaded() agrees with
-- the built-in policy on workers that batch; a device's is its worker count.
local function load_of(x)
  local l = x.load
  if l == nil then return x.workers or 0 end
  local slots = x.slots
  if slots ~= nil and slots > 1 then return l / slots end
  return l
end
local function free_of(x) return x.memory_free or x.vram_free or 0 end

local function keep_if(self, pred, a, b)
  local out, n = {}, 0
  for i = 1, #self do
    local x = self[i]
    if pred(x, a, b) then n = n + 1; out[n] = x end
  end
  return new_list(out)
end

local function by_fn(x, fn) return fn(x) end
local function by_model(x, m) return x.model == m end
local function by_hive(x, h) return x.hive_id == h end
local function by_region(x, r) return x.region == r end
local function by_kind(x, k) return x.kind == k end
local function by_idle(x) return load_of(x) == 0 end
local function by_ready(x) return x.state == "ready" end
local function by_fit(x, bytes) return free_of(x) >= bytes end
local function by_label(x, k, v)
  local labels = x.labels
  if type(labels) ~= "table" then return false end
  if v == nil then return labels[k] ~= nil end
  return labels[k] == v
end

function methods.filter(self, fn) return keep_if(self, by_fn, fn) end
function methods.with_model(self, m) return keep_if(self, by_model, m) end
function methods.on_hive(self, h) return keep_if(self, by_hive, h) end
function methods.in_region(self, r) return keep_if(self, by_region, r) end
function methods.kind(self, k) return keep_if(self, by_kind, k) end
function methods.idle(self) return keep_if(self, by_idle) end
function methods.ready(self) return keep_if(self, by_ready) end
function methods.fits(self, bytes) return keep_if(self, by_fit, bytes) end
function methods.with_label(self, k, v) return keep_if(self, by_label, k, v) end

local function sort_cost(n) return n < 2 and 1 or m_floor(n * m_log(n, 2) / 4) + 1 end

-- Ascending by fn(x), stable: fn runs once per element.
function methods.sort_by(self, fn)
  local n, keys, order = #self, {}, {}
  for i = 1, n do keys[i] = fn(self[i]); order[i] = i end
  charge(sort_cost(n))
  t_sort(order, function(a, b)
    local ka, kb = keys[a], keys[b]
    if ka == kb then return a < b end
    return ka < kb
  end)
  local out = {}
  for i = 1, n do out[i] = self[order[i]] end
  return new_list(out)
end

-- The element with the smallest score(x), ties broken by id (key for devices).
local function smallest(self, score)
  local best, best_s, best_id = nil, nil, nil
  for i = 1, #self do
    local x = self[i]
    local s, id = score(x), ident(x)
    if best == nil or s < best_s or (s == best_s and id < best_id) then
      best, best_s, best_id = x, s, id
    end
  end
  return best
end

local function minus_free(x) return -free_of(x) end

function methods.least_loaded(self) return smallest(self, load_of) end
function methods.most_vram_free(self) return smallest(self, minus_free) end
function methods.first(self) return self[1] end
function methods.count(self) return #self end
function methods.empty(self) return #self == 0 end
function methods.ids(self)
  local out = {}
  for i = 1, #self do out[i] = ident(self[i]) end
  return out
end

---------------------------------------------------------------------------------------------
-- Globals for scripts: gpu_vram_free, log/print, and wrappers for C functions whose cost
-- is not bounded by the instruction count.
---------------------------------------------------------------------------------------------

local function index_vram(list)
  local index = {}
  for i = 1, #list do
    local x = list[i]
    local free, key, bare = free_of(x), x.key, x.id
    if key == nil then            -- a worker: hive_id/device
      bare = x.device
      if type(x.hive_id) == "string" and type(bare) == "string" then
        key = x.hive_id .. "/" .. bare
      end
    end
    if key ~= nil and index[key] == nil then index[key] = free end
    if bare ~= nil and index[bare] == nil then index[bare] = free end
  end
  return index
end

local function gpu_vram_free(k)
  if type(k) == "table" then return free_of(k) end
  if vram == nil then vram = index_vram(inputs or {}) end
  return vram[k] or 0
end

local function show(v)
  local t = type(v)
  if t == "string" then return s_sub(v, 1, LOG_CHARS) end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  if t == "table" and is_list(v) then return "<list of " .. #v .. ">" end
  return "<" .. t .. ">"
end

local function log(...)
  if nlogs >= LOG_LINES then return end
  local n, parts = select("#", ...), {}
  if n > 16 then n = 16 end
  for i = 1, n do parts[i] = show((select(i, ...))) end
  nlogs = nlogs + 1
  logs[nlogs] = clean(t_concat(parts, " "), LOG_CHARS)
end

local function check_string(v, fname, level)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  error(s_format("bad argument to '%s' (string expected, got %s)", fname, t), level)
end

-- Upper bound of the steps Lua's backtracking matcher may take, in "instructions".
-- A pattern with q choice points (* + - ? %b %1..%9) tries at most C(n+q, q) splits of an
-- n-byte subject per start position: cheap for the short ids and labels scripts look at,
-- and refused up front for the pathological ones, which no hook could interrupt.
local choice_points = {}   -- pattern -> q (false: no magic characters); patterns repeat
local cached = 0

local function count_choice_points(p)
  if s_len(p) > MAX_PATTERN then
    error(s_format("pattern longer than %d bytes", MAX_PATTERN), 4)
  end
  local q = false
  if s_find(p, "[%^%$%*%+%?%.%(%)%[%]%%%-]") then
    q = select(2, s_gsub(p, "[%*%+%-%?]", "")) + select(2, s_gsub(p, "%%[b1-9]", ""))
  end
  if cached >= 256 then choice_points, cached = {}, 0 end
  choice_points[p], cached = q, cached + 1
  return q
end

local function charge_pattern(s, p, anchored, fname)
  if type(s) ~= "string" then s = check_string(s, fname, 4) end
  if type(p) ~= "string" then p = check_string(p, fname, 4) end
  local q = choice_points[p]
  if q == nil then q = count_choice_points(p) end
  local n = s_len(s)
  if not q then return charge((n * s_len(p)) // 64 + 1) end
  local splits = 1
  for k = 1, q do
    splits = splits * (n + k) / k
    if splits > BUDGET * 64 then break end
  end
  local starts = (anchored and s_byte(p, 1) == 94) and 1 or n + 1   -- 94 is "^"
  local cost = starts * splits * (s_len(p) + 1) / 32
  if cost >= BUDGET then
    error(s_format("'%s': pattern too expensive for a %d-byte subject", fname, n), 3)
  end
  charge(m_floor(cost) + 1)
end

local function safe_find(s, p, init, plain)
  if plain then
    local a, b = check_string(s, "find", 3), check_string(p, "find", 3)
    charge((s_len(a) * s_len(b)) // 64 + 1)
  else
    charge_pattern(s, p, true, "find")
  end
  return s_find(s, p, init, plain)
end

local function safe_match(s, p, init)
  charge_pattern(s, p, true, "match")
  return s_match(s, p, init)
end

local function safe_gmatch(s, p)
  charge_pattern(s, p, false, "gmatch")
  return s_gmatch(s, p)
end

local function safe_gsub(s, p, repl, n)
  charge_pattern(s, p, true, "gsub")
  local out, count = s_gsub(s, p, repl, n)
  charge(s_len(out) // 64)
  return out, count
end

-- How many values string.byte/utf8.codepoint(s, i, j) return (negative: from the end).
local function span(i, j, len)
  i = tonumber(i) or 1
  j = tonumber(j) or i
  if i < 0 then i = len + i + 1 end
  if j < 0 then j = len + j + 1 end
  if i < 1 then i = 1 end
  if j > len then j = len end
  return j - i + 1
end

local function too_many(fname, count)
  if count > MAX_RESULTS then
    error(s_format("'%s' would return %d values (max %d)", fname, count, MAX_RESULTS), 3)
  end
  if count > 0 then charge(count // 8) end
end

local function safe_byte(s, i, j)
  local str = check_string(s, "byte", 3)
  too_many("byte", span(i, j, s_len(str)))
  return s_byte(s, i, j)
end

local function safe_codepoint(s, i, j)
  local str = check_string(s, "codepoint", 3)
  too_many("codepoint", span(i, j, s_len(str)))
  return u_codepoint(s, i, j)
end

local function safe_unpack(t, i, j)
  if type(t) ~= "table" then error("bad argument to 'unpack' (table expected)", 2) end
  too_many("unpack", (tonumber(j) or #t) - (tonumber(i) or 1) + 1)
  return t_unpack(t, i, j)
end

local function moved(t, pos)
  if type(t) ~= "table" then error("bad argument to table function (table expected)", 3) end
  local n = #t
  local count = n - (tonumber(pos) or n) + 1   -- elements shifted
  if count > n + 1 then count = n + 1 end
  if count > 0 then charge(count) end
end

local function safe_insert(t, ...)
  if select("#", ...) >= 2 then moved(t, (...)) end
  return t_insert(t, ...)
end

local function safe_remove(t, ...)
  if select("#", ...) >= 1 then moved(t, (...)) end
  return t_remove(t, ...)
end

local function safe_sort(t, cmp)
  if type(t) ~= "table" then error("bad argument to 'sort' (table expected)", 2) end
  charge(sort_cost(#t))
  return t_sort(t, cmp)
end

local function safe_concat(t, sep, i, j)
  if type(t) ~= "table" then error("bad argument to 'concat' (table expected)", 2) end
  local out = t_concat(t, sep, i, j)
  charge(s_len(out) // 64)
  return out
end

-- Functions linear in their string argument (or result) are charged one instruction per
-- 64 bytes, so multi-MiB strings cannot multiply the budget's reach.
local function linear_in_input(fn)
  return function(s, ...)
    if type(s) == "string" then charge(s_len(s) // 64) end
    return fn(s, ...)
  end
end

local function linear_in_output(fn)
  return function(...)
    local out = fn(...)
    if type(out) == "string" then charge(s_len(out) // 64) end
    return out
  end
end

-- The whitelist. Everything else (io, os, require, load, dofile, debug, coroutine,
-- collectgarbage, setmetatable, getmetatable, raw*, string.rep, string.dump, python) is absent.
local function pick(src, names)
  local out = {}
  for _, k in ipairs(names) do out[k] = src[k] end
  return out
end

local function clone(src)
  local out = {}
  for k, v in pairs(src) do out[k] = v end
  return out
end

local BASE = pick(_G, {"assert", "error", "ipairs", "next", "pairs", "select",
                       "tonumber", "tostring", "type", "_VERSION"})
BASE.pcall, BASE.log, BASE.print, BASE.gpu_vram_free = safe_pcall, log, log, gpu_vram_free
BASE.tonumber = linear_in_input(tonumber)

local safe_string = pick(string, {"char", "len"})
safe_string.lower, safe_string.upper = linear_in_input(string.lower), linear_in_input(string.upper)
safe_string.sub, safe_string.format = linear_in_output(s_sub), linear_in_output(s_format)
safe_string.byte, safe_string.find, safe_string.match = safe_byte, safe_find, safe_match
safe_string.gmatch, safe_string.gsub = safe_gmatch, safe_gsub

local safe_table = {insert = safe_insert, remove = safe_remove, sort = safe_sort,
                    concat = safe_concat, unpack = safe_unpack}

local safe_math = clone(math)
safe_math.randomseed = nil

local safe_utf8 = pick(utf8, {"char", "charpattern", "codes"})
safe_utf8.len, safe_utf8.offset = linear_in_input(u_len), linear_in_input(utf8.offset)
safe_utf8.codepoint = safe_codepoint

-- A script's globals. The library tables are copies: a script that rewrites string.find or
-- math.max changes its own env only (string methods, s:find(), keep the originals).
local function new_env()
  local env = clone(BASE)
  env.string, env.table = clone(safe_string), clone(safe_table)
  env.math, env.utf8 = clone(safe_math), clone(safe_utf8)
  env._G = env
  return env
end

---------------------------------------------------------------------------------------------
-- Inputs. A worker's or device's static fields (id or key, hive, model, kind, name, region,
-- labels) change only when a hive re-registers or reports new labels, so they are kept in this
-- runtime between calls, under slot numbers lua.py assigns ("upserts"); a call then passes
-- only each candidate's slot and its live fields (load, state, memory free...).
--
-- What the script is handed is kept too (its records, the list, the coroutine it runs in), so
-- a call allocates next to nothing: Lua's garbage collector ending a cycle, not the work
-- itself, was what made one decision in forty slow. A record the script sees is an empty table
-- whose metatable reads through to the kept fields (static, then this call's live ones);
-- labels likewise. Being empty, a record notices every write (__newindex): the write lands in
-- the record itself, which is then dropped, so the next call hands out a new one and a
-- script's writes end with its call; what is kept is never reachable from a script. The list
-- is refilled every call, and replaced once the script added a key to it.
--
-- prepare's arguments, flat scalars only (fast to convert; built into tables here, inside
-- Lua's error protection):
--   reset, #label upserts, then each: token, #pairs, k1, v1, k2, v2...
--   #record upserts, then each: slot, labels token, static fields...
--   the head (job or model): #label pairs, k1, v1..., its fields
-- and it answers how many candidates feed() takes per call; feed's arguments are the first
-- candidate's position, then each candidate's slot and live fields, candidate after candidate.
---------------------------------------------------------------------------------------------

local HEAD_FIELDS = {route = config.job_fields, place = config.model_fields}
local STATIC = {route = config.worker_static, place = config.device_static}
local LIVE = {route = config.worker_live, place = config.device_live}
local ITEM_KEY = {route = "id", place = "key"}
local NOUN = {route = "worker id", place = "device key"}
local RECORD = "rbee.record"

-- Per hook: fields[slot] (static + live + labels), label_of[slot], labels[token] (kept
-- labels), shown[slot] and shown_labels[token] (what scripts get), used[slot] (the last call
-- that handed the slot out).
local kept = {}
local function forget(hook)
  kept[hook] = {fields = {}, label_of = {}, labels = {}, shown = {}, shown_labels = {},
                used = {}}
end
for hook in pairs(STATIC) do forget(hook) end

local written = {}   -- records, labels and lists written to during the last call: not handed
                     -- out again

local function on_write(view, k, v)
  written[view] = true
  rawset(view, k, v)
end

local function is_view(x)
  local mt = debug_getmetatable(x)
  return mt ~= nil and mt.__name == RECORD
end

-- next() for scripts: over a record or labels, its own fields (what the script wrote) first,
-- then the kept ones not shadowed; the kept table itself never reaches the script.
local function view_next(t, k)
  if not is_view(t) then return next(t, k) end
  local src = debug_getmetatable(t).__index
  local v
  if k == nil or rawget(t, k) ~= nil then
    k, v = next(t, k)
    if k ~= nil then return k, v end
  end
  repeat k, v = next(src, k) until k == nil or rawget(t, k) == nil
  return k, v
end
BASE.next = view_next

local function view_pairs(view) return view_next, view, nil end

local function new_view(src)
  return setmetatable({}, {__index = src, __newindex = on_write, __pairs = view_pairs,
                           __name = RECORD, __metatable = RECORD})
end

local function keep_labels(store, a, i, count)
  for _ = 1, count do
    local token, size, t = a[i], a[i + 1], {}
    for j = i + 2, i + 2 * size, 2 do t[a[j]] = a[j + 1] end
    store.labels[token], store.shown_labels[token] = t, nil
    i = i + 2 + 2 * size
  end
  return i
end

local function keep_records(store, names, a, i, count)
  local nf = #names
  for _ = 1, count do
    local slot, fields = a[i], {}
    for k = 1, nf do fields[names[k]] = a[i + 1 + k] end
    store.fields[slot], store.label_of[slot], store.shown[slot] = fields, a[i + 1], nil
    i = i + 2 + nf
  end
  return i
end

local function shown_labels(store, token, dirty)
  local view = store.shown_labels[token]
  if view == nil or dirty[view] then
    local labels = store.labels[token]
    if labels == nil then error("unknown labels token " .. tostring(token), 0) end
    view = new_view(labels)
    store.shown_labels[token] = view
  end
  return view
end

-- A record of the same slot twice in one call: a one-off, with its own copy of the fields.
local function duplicate(fields)
  local out = {}
  for k, v in next, fields do out[k] = v end
  return out
end

-- The call being prepared, then decided. Candidates arrive in chunks (feed); nothing here
-- allocates per call but the head and the records a write made stale.
local call_hook, call_head, call_n, calls = nil, nil, 0, 0
local lists, fields_of, listed = {}, {}, {}   -- per hook: the list handed out, its records'
                                              -- kept fields, and how long it was last time
List.__newindex = on_write   -- a list a script added a key to is not handed out again

-- Generates, for one hook, `take(j, slot, <live fields>)` (the j-th candidate of the call)
-- and the feeder that calls it for up to `per` candidates given as named parameters: varargs
-- would need a table per call (or a quadratic `select`).
local FEED_PARAMS = 180   -- Lua allows 200 locals in a function
local TAKE = [==[
local ctx, new_view, duplicate, shown_labels, rawset, error, tostring = ...
return function(j, slot, %s)
  local store = ctx.store
  local fields, view = store.fields[slot], store.shown[slot]
  if fields == nil then error("unknown record slot " .. tostring(slot), 0) end
  local dirty = ctx.dirty
  if store.used[slot] == ctx.call then
    fields = duplicate(fields)
    view = new_view(fields)
  elseif view == nil or dirty[view] then
    view = new_view(fields)
    store.shown[slot] = view
  end
  store.used[slot] = ctx.call
  %s
  local token = store.label_of[slot]
  local labels = store.shown_labels[token]
  if labels == nil or dirty[labels] then labels = shown_labels(store, token, dirty) end
  if fields.labels ~= labels then fields.labels = labels end
  rawset(ctx.list, j, view)   -- raw: the list's __newindex is for the script's writes
  ctx.fields[j] = fields
end]==]

local call = {}   -- the call being fed: store, dirty, list, fields, call (a serial)

local function make_feeder(live)
  local sets = {}
  for k, name in ipairs(live) do sets[k] = s_format("fields.%s = %s", name, name) end
  local take = assert(load(s_format(TAKE, t_concat(live, ", "), t_concat(sets, "; ")),
                           "=take", "t", {}))(call, new_view, duplicate, shown_labels, rawset,
                                              error, tostring)
  local width = 1 + #live
  local per = FEED_PARAMS // width
  local params, body = {}, {}
  for k = 1, per do
    local vals = {}
    for w = 1, width do vals[w] = s_format("v%d_%d", k, w) end
    local list = t_concat(vals, ", ")
    params[k] = list
    body[k] = s_format("if v%d_1 == nil then return end take(first + %d, %s)", k, k - 1, list)
  end
  local src = s_format("local take = ...\nreturn function(first, %s)\n%s\nend",
                       t_concat(params, ", "), t_concat(body, "\n"))
  return assert(load(src, "=feeder", "t", {}))(take), per
end

-- Generates `function(a, i, labels)` -> the head table from a[i...].
local function make_head(fields)
  local parts = {}
  for k, name in ipairs(fields) do parts[k] = s_format("%s = a[i + %d]", name, k - 1) end
  local src = s_format("return function(a, i, labels) return {%s, labels = labels} end",
                       t_concat(parts, ", "))
  return assert(load(src, "=head", "t", {}))()
end

local HOOKS = {}   -- route/place functions of the compiled script, captured once
local build_head, feeders, feed_sizes = {}, {}, {}
for hook, fields in pairs(HEAD_FIELDS) do
  build_head[hook] = make_head(fields)
  feeders[hook], feed_sizes[hook] = make_feeder(LIVE[hook])
  fields_of[hook], listed[hook] = {}, 0
end

local function chosen(hook, n, result)
  local t, key = type(result), ITEM_KEY[hook]
  if t == "nil" then return "ok", nil end
  if result == false then return "refuse", nil end  -- none of these: no fallback either
  if t == "table" and not is_view(result) and rawget(result, "refuse") ~= nil then
    -- {refuse = "reason"}: this request is refused, the reason goes to its client
    local reason = rawget(result, "refuse")
    if type(reason) ~= "string" or reason == "" then
      return "error", hook .. " returned {refuse = ...} without a reason string"
    end
    return "deny", clean(reason, 200)
  end
  if t == "table" then
    if is_list(result) then
      return "error", hook .. " returned a list; pick one element (e.g. :least_loaded())"
    end
    -- a record answers with its key as the script sees it (a forged one is caught below)
    result = is_view(result) and result[key] or rawget(result, key)
    if type(result) ~= "string" then
      return "error", s_format("%s returned a table without a string '%s'", hook, key)
    end
  elseif t ~= "string" then
    return "error", hook .. " returned a " .. t
  end
  local fields = fields_of[hook]
  for j = 1, n do
    if fields[j][key] == result then return "ok", result end
  end
  return "error", s_format("%s returned unknown %s \"%s\"", hook, NOUN[hook], clean(result, 64))
end

-- Starts a call: upserts and the head; the n candidates follow through feed(). After the
-- labels: head label pairs, head fields.
local function prepare(hook, n, ...)
  call_hook, call_head, inputs, vram = nil, nil, nil, nil
  local a = {...}
  if a[1] then forget(hook) end
  local store = kept[hook]
  local dirty = written
  if next(written) ~= nil then written = {} end
  calls = calls + 1
  local i = keep_labels(store, a, 3, a[2])
  i = keep_records(store, STATIC[hook], a, i + 1, a[i])
  local head_labels = {}
  for j = i + 1, i + 2 * a[i], 2 do head_labels[a[j]] = a[j + 1] end
  i = i + 1 + 2 * a[i]
  local list = lists[hook]
  if list == nil or dirty[list] then
    list = new_list({})
    lists[hook], listed[hook] = list, 0
  end
  for j = n + 1, listed[hook] do rawset(list, j, nil) end
  listed[hook] = n
  call.store, call.dirty, call.list, call.fields, call.call = store, dirty, list,
                                                               fields_of[hook], calls
  call_hook, call_head, call_n = hook, build_head[hook](a, i, head_labels), n
  return feed_sizes[hook]
end

local function feed(hook, ...)
  if hook ~= call_hook then error("feed without prepare", 0) end
  return feeders[hook](...)
end

local function decide()
  local hook, head, n = call_hook, call_head, call_n
  call_hook, call_head = nil, nil
  local fn = HOOKS[hook]
  if fn == nil then return "ok", nil end
  local list = lists[hook]
  nlogs, inputs, vram = 0, list, nil
  local status, result = run(fn, head, list)
  inputs, vram = nil, nil
  if status == "ok" then status, result = chosen(hook, n, result) end
  return status, result, t_unpack(logs, 1, nlogs)
end

local staged = nil   -- what stage left for compile

local function stage(source, name)
  staged = {source = source, name = name}
end

-- Loads the script (text only, never bytecode) and runs its top-level code under the budget.
local function compile()
  local source, name = staged.source, staged.name
  staged, nlogs = nil, 0
  local env = new_env()
  local fn, err = load(source, "=" .. name, "t", env)
  if fn == nil then return "error", clean(err, 300), false, false end
  local status, result = run(fn)
  if status == "ok" then
    for hook in pairs(HEAD_FIELDS) do
      local f = rawget(env, hook)
      if f ~= nil and type(f) ~= "function" then
        status, result = "error", s_format("'%s' is a %s, not a function", hook, type(f))
      elseif status == "ok" then
        HOOKS[hook] = f
      end
    end
  end
  return status, result, HOOKS.route ~= nil, HOOKS.place ~= nil, t_unpack(logs, 1, nlogs)
end

---------------------------------------------------------------------------------------------
-- Lock-down: strings index the safe string table, Python objects refuse every operation,
-- and the real globals (where lupa put `python`) are emptied.
---------------------------------------------------------------------------------------------

debug_getmetatable("").__index = safe_string

local py = debug_getmetatable(probe)
local function no_python() error("Python objects are not available to scripts", 2) end
py.__index, py.__newindex, py.__call = no_python, no_python, no_python
py.__tostring = function() return "<python object>" end
py.__metatable = false

local G = _G
for k in next, G do G[k] = nil end

return {stage = stage, compile = compile, prepare = prepare, feed = feed, decide = decide}
