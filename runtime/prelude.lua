-- The sandbox's prelude: trusted host code, compiled once per process to stripped bytecode
-- (runtime/sandbox.py) and run at the start of every run with the arguments below. It builds
-- the handler's environment and ctx table, the hook and the guards; see docs/sandbox.md.
local host, now, on_kill, STEP, MAXI, DEADLINE, PATTERN_MAX, MAXDEPTH, MAXITEMS, MAXPDEPTH,
      CALLMAX, SRCMAX, JUMPMAX, MEMMAX, config, instance = ...
python = nil

local type, error, select, rawget, rawset, rawequal, rawlen, next, pairs, ipairs =
      type, error, select, rawget, rawset, rawequal, rawlen, next, pairs, ipairs
local tostring, tonumber, setmetatable_, getmetatable_, pcall_, xpcall_, assert =
      tostring, tonumber, setmetatable, getmetatable, pcall, xpcall, assert
local load_, collectgarbage_ = load, collectgarbage
local sethook, getinfo = debug.sethook, debug.getinfo
local co_create, co_resume, co_status, co_running, co_yield, co_isyieldable, co_close =
      coroutine.create, coroutine.resume, coroutine.status, coroutine.running, coroutine.yield,
      coroutine.isyieldable, coroutine.close
local s_find, s_match, s_gmatch, s_gsub, s_sub, s_byte = string.find, string.match, string.gmatch,
      string.gsub, string.sub, string.byte
local s_rep, s_format = string.rep, string.format
local t_concat, t_move, t_sort, t_unpack = table.concat, table.move, table.sort, table.unpack
local utf8_len, m_type, m_tointeger, m_log, m_max, HUGE = utf8.len, math.type, math.tointeger, math.log, math.max, math.huge

-- Lock lupa's shared wrapper metatable and the string metatable.
rawset(getmetatable_(host), "__metatable", false)

local killed = false
local KILLMSG = "junction: run stopped"
local count = 0
local pdepth = 0
local hook

local function locate()
  for level = 3, 40 do
    local info = getinfo(level, "Sl")
    if not info then break end
    if info.source ~= "=[junction]" and info.currentline and info.currentline > 0 then
      return info.short_src, info.currentline
    end
  end
  return nil, nil
end

local function where()
  local file, line = locate()
  if file then return file .. ":" .. line .. ": " end
  return ""
end

local function die()
  sethook(hook, "", 1)
  error(KILLMSG, 0)
end

local function kill(code, msg)
  if not killed then
    sethook()  -- no hook while the kill is recorded; die() re-arms it
    killed = code
    local file, line = locate()
    on_kill(code, msg, file, line)
  end
  die()
end

hook = function()
  if killed then error(KILLMSG, 0) end
  count = count + STEP
  if count > MAXI then kill("instruction_limit", "instruction limit of " .. MAXI .. " reached") end
  if now() > DEADLINE then kill("timeout", "wall-clock time limit reached") end
end

local function check()
  if killed then die() end
  count = count + 50
  if count > MAXI then kill("instruction_limit", "instruction limit of " .. MAXI .. " reached") end
  if now() > DEADLINE then kill("timeout", "wall-clock time limit reached") end
end

-- Work inside one C call of the standard library never meets the hook, so it is priced up
-- front in instruction units (about one VM instruction's time each). charge() takes units
-- from the budget, stopping the run when they are not left; work() also refuses a single
-- call over CALLMAX units, so no one call can overrun the deadline by more than a few tens
-- of milliseconds before the hook looks at the clock again.
local function charge(units)
  if killed then die() end
  count = count + units
  if count > MAXI then kill("instruction_limit", "instruction limit of " .. MAXI .. " reached") end
end

-- A call whose worst case (ns, from measured C speeds) cannot end before the deadline is
-- stopped now: the hook would only see the overrun after it.
local function affordable(ns)
  if ns > 1e6 and now() + ns / 1e9 > DEADLINE then
    kill("timeout", "wall-clock time limit reached (a call could not have finished in time)")
  end
end

local function work(units, what)
  if units > CALLMAX then
    error(where() .. "call_too_costly: " .. what .. " would take about " .. s_format("%.0f", units)
          .. " steps in one call (at most " .. CALLMAX .. "); do the work in smaller pieces", 0)
  end
  affordable(units * 4)
  charge(units)
end

-- What luaL_checkinteger would make of v (numbers and numeric strings), or nil: the C
-- function then raises its own argument error.
local function int(v)
  if type(v) == "string" then v = tonumber(v) end
  if type(v) ~= "number" then return nil end
  return m_tointeger(v)
end

-- A Lua loop of that many steps, each about `per` instructions: stopped now if the budget
-- cannot cover it (the hook would stop it later anyway, with nothing gained).
local function loop(steps, per)
  if steps > 0 then
    if killed then die() end
    if (steps + 0.0) * per > MAXI - count then
      kill("instruction_limit", "instruction limit of " .. MAXI .. " reached")
    end
  end
end

local function after_protected(ok, err)
  if killed then die() end
  if not ok and err == "not enough memory" then kill("memory_limit", "memory limit reached") end
end

-- The lazy library (prelude_lazy.lua), fetched from the host on a run's first need.
local lazylib
local function lazy()
  if not lazylib then
    local okh, code = pcall_(host, "__lazy", 0, 0)
    if not okh then kill("interrupted", "the run was interrupted by the platform") end
    -- The same names, in the same order, as the lazy library's first line.
    lazylib = load_(code, "=[junction]", "b")(
      work, loop, int, s_byte, m_max, m_log, t_concat, t_unpack, t_move, t_sort, s_gsub, s_sub, m_type, where,
      SRCMAX, JUMPMAX, check, after_protected, hook, sethook, STEP, co_create, co_resume, co_close, s_format,
      PATTERN_MAX)
  end
  return lazylib
end


-- plain(v): a copy of v with only plain data, made with raw access; errors are plain strings.
local items
local function plain(v, depth)
  local tv = type(v)
  if tv == "string" then
    if not utf8_len(v) then error("invalid_value: strings must be valid UTF-8", 0) end
    return v
  elseif tv == "number" then
    if v ~= v or v == HUGE or v == -HUGE then error("invalid_value: NaN and infinity are not allowed", 0) end
    return v
  elseif tv == "boolean" or tv == "nil" then
    return v
  elseif tv == "table" then
    if depth >= MAXDEPTH then error("invalid_value: tables nested too deeply (or a cycle)", 0) end
    local out = {}
    local ints, strs = false, false
    local k, val = next(v)
    while k ~= nil do
      items = items + 1
      if items > MAXITEMS then error("invalid_value: too many table entries", 0) end
      local tk = type(k)
      if tk == "string" then
        if not utf8_len(k) then error("invalid_value: strings must be valid UTF-8", 0) end
        strs = true
      elseif tk == "number" and m_type(k) == "integer" then
        ints = true
      else
        error("invalid_value: table keys must be strings or integers", 0)
      end
      out[k] = plain(val, depth + 1)
      k, val = next(v, k)
    end
    if ints and strs then lazy().clash(out) end
    return out
  end
  error("invalid_value: a " .. tv .. " cannot leave the sandbox", 0)
end

local function copyargs(n, ...)
  items = 0
  local args = {}
  for i = 1, n do args[i] = plain((select(i, ...)), 0) end
  return args
end

local function hostcall(name, maxargs, ...)
  local n = select("#", ...)
  if n > maxargs then
    error(where() .. "invalid_argument: ctx." .. name .. " takes at most " .. maxargs .. " arguments", 0)
  end
  check()
  local okc, args = pcall_(copyargs, n, ...)
  after_protected(okc, args)
  if not okc then error(where() .. args, 0) end
  -- pcall: a Python exception that escaped the host (a worker's soft time limit arriving
  -- mid-call) must never reach handler code as an object; it stops the run instead.
  local okh, ok, a, b, stop = pcall_(host, name, n, args)
  if killed then die() end
  if not okh then
    if ok == "not enough memory" then kill("memory_limit", "memory limit reached") end
    kill("interrupted", "the run was interrupted by the platform")
  end
  if ok then
    if now() > DEADLINE then kill("timeout", "wall-clock time limit reached") end
    return a
  end
  if stop then kill(a, b) end
  error(where() .. a .. ": " .. b, 0)
end

local function fn(name, maxargs)
  return function(...)
    local r = hostcall(name, maxargs, ...)
    return r
  end
end

-- Pattern cost guard --------------------------------------------------------------------
-- Plain searches are priced here (every start against the pattern); patterns with magic
-- characters by the lazy library's cost(), which reads and caches them.
local function guard(s, p, plainflag, unanchorable)
  if type(s) == "number" then s = tostring(s) end
  if type(p) == "number" then p = tostring(p) end
  if type(s) ~= "string" or type(p) ~= "string" then return end
  local n = #s
  local cost
  if plainflag or not s_find(p, "[%^%$%*%+%?%.%(%)%[%]%%%-]") then
    cost = n * #p
  else
    cost = lazy().cost(p, n, unanchorable)
  end
  if cost > PATTERN_MAX then lazy().refuse(cost, n) end
  -- Measured worst cases run at up to ~17 ns per step; the budget is charged a hundredth
  -- of the estimate, since most subjects cost far less than their pattern's worst case.
  affordable(cost * 20)
  charge(cost / 100)
end

-- The state is fresh per run, so library tables are adjusted in place (the prelude keeps
-- its own locals): whatever a handler does to them dies with its run.
local S = string
S.dump = nil
S.find = function(s, p, init, pl) guard(s, p, pl); return s_find(s, p, init, pl) end
S.match = function(s, p, init) guard(s, p); return s_match(s, p, init) end
-- gmatch reads a leading ^ as a plain character: never anchored.
S.gmatch = function(s, p, init) guard(s, p, false, true); return s_gmatch(s, p, init) end
S.gsub = function(s, p, r, n) guard(s, p); return s_gsub(s, p, r, n) end
S.rep = function(s, n, sep)
  -- rep loops n times in C even when nothing is copied (string.rep("", 8e9)).
  local k = int(n)
  if k and k > 0 then
    local width = (type(s) == "string" and #s or 0) + (type(sep) == "string" and #sep or 0)
    -- A result larger than the heap fails at its allocation, before the loop: that is the
    -- memory limit's to report.
    if (k + 0.0) * width <= MEMMAX then work(k * 2.0 + k * width / 16.0, "string.rep") end
  end
  return s_rep(s, n, sep)
end
local smt = getmetatable_("")
rawset(smt, "__index", S)
rawset(smt, "__metatable", false)

local function copy(t, names)
  local out = {}
  for i = 1, #names do local name = names[i]; out[name] = t[name] end
  return out
end

-- Emulated pcall / xpcall / coroutines: the kill is rethrown, never swallowed.
local function pfinish(ok, ...)
  pdepth = pdepth - 1
  after_protected(ok, (...))
  return ok, ...
end
local function s_pcall(f, ...)
  check()
  if pdepth >= MAXPDEPTH then error("stack overflow (pcall nested too deeply)", 2) end
  pdepth = pdepth + 1
  return pfinish(pcall_(f, ...))
end
local function xfinish(msgh, ok, ...)
  pdepth = pdepth - 1
  after_protected(ok, (...))
  if ok then return true, ... end
  local okh, r = pcall_(msgh, (...))
  after_protected(okh, r)
  return false, r
end
local function s_xpcall(f, msgh, ...)
  check()
  if pdepth >= MAXPDEPTH then error("stack overflow (pcall nested too deeply)", 2) end
  pdepth = pdepth + 1
  return xfinish(msgh, pcall_(f, ...))
end

local function s_setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not allowed", 2)
  end
  return setmetatable_(t, mt)
end

local function s_collectgarbage(opt)
  if opt == nil or opt == "count" then return collectgarbage_("count") end
  if opt == "collect" then
    -- A full collection walks the whole heap in C (about 0.6 µs per KB measured).
    local units = collectgarbage_("count") * 150
    affordable(units * 4)
    charge(units)
    local r = collectgarbage_(opt)
    check()
    return r
  end
  if opt == "step" then return collectgarbage_(opt) end
  error("collectgarbage: only 'count', 'collect' and 'step' are available", 2)
end

local env = {}
local loaded = {}

-- Lua's parser is quadratic in the number of jumps one expression or if-chain collects
-- ("a and a and ...", "elseif" after "elseif"): 10,000 of them take about 0.2 s, 40,000 about
-- 3.5 s. Sources are capped in bytes and in and/or/elseif words (counted anywhere, the
-- cheap upper bound), and priced by both; the deadline is checked again after each parse.
local function compile(src, name, e)
  local n = #src
  -- Over 1 KiB the lazy library counts the jumps (and refuses what is too large or slow).
  local units = n > 1024 and lazy().parse_units(src, name) or n * 4 + (n / 5) ^ 2
  affordable(units * 4)
  charge(units)
  local chunk, err = load_(src, name, "t", e)
  -- A parse of a few KiB ends well within the hook's own granularity.
  if units > 100000 then check() end
  return chunk, err
end

local function s_load(chunk, name, mode, e)
  check()
  if type(chunk) ~= "string" then error("load: only source strings can be loaded", 2) end
  return compile(chunk, "=" .. tostring(name or "load"), e or env)
end

local function loadfile_(file)
  local okh, src = pcall_(host, "__source", 1, file)
  if not okh then kill("interrupted", "the run was interrupted by the platform") end
  if src == nil then return nil end
  local chunk, err = compile(src, "=" .. file, env)
  if not chunk then error("syntax_error: " .. err, 0) end
  return chunk
end

local function s_require(name)
  check()
  if type(name) ~= "string" then error("require: module name must be a string", 2) end
  local v = loaded[name]
  if v ~= nil then return v end
  local file = s_gsub(name, "%.", "/") .. ".lua"
  local chunk = loadfile_(file)
  if not chunk then error("module '" .. name .. "' not found in the bundle", 2) end
  v = chunk(name)
  if v == nil then v = true end
  loaded[name] = v
  return v
end

-- ctx.<name> = fn(name, max_args) for each function of the package contract
-- (marketplace/packaging/contract.py), written in at the marker when the prelude is compiled.
local ctx = {
  --[[ctx functions]]
  config = config,
  instance = instance,
}

local print_host = ctx.print
local function s_print(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  print_host(t_concat(parts, "\t"))
end
ctx.print = s_print

env.assert, env.error, env.ipairs, env.next, env.pairs = assert, error, ipairs, next, pairs
env.rawequal, env.rawget, env.rawlen, env.rawset, env.select = rawequal, rawget, rawlen, rawset, select
env.tonumber, env.tostring, env.type, env.getmetatable = tonumber, tostring, type, getmetatable_
env._VERSION = _VERSION
env.pcall, env.xpcall, env.setmetatable, env.collectgarbage = s_pcall, s_xpcall, s_setmetatable, s_collectgarbage
env.print, env.load, env.require = s_print, s_load, s_require
env.string = S
env.table = table
-- insert, remove, concat, unpack, move and sort loop in C over a length the handler controls
-- (through __len, or a plain table's border, which can be 2^40 with 41 entries): they are
-- replaced by the lazy library's versions, installed on first access.
local function lazily(t, names)
  return setmetatable_(t, { __metatable = false, __index = function(_, k)
    if names[k] then
      local lib = lazy()
      for name in next, names do rawset(t, name, lib[name]) end
      return lib[k]
    end
  end })
end
local LAZY_TABLE = { insert = true, remove = true, concat = true, unpack = true, move = true, sort = true }
for name in next, LAZY_TABLE do rawset(table, name, nil) end
lazily(table, LAZY_TABLE)
env.math = math
env.utf8 = utf8
env.os = copy(os, {"time", "clock", "date", "difftime"})
-- create/resume/wrap/close come from the lazy library on first access, like table's.
env.coroutine = lazily(
  { status = co_status, running = co_running, yield = co_yield, isyieldable = co_isyieldable },
  { create = true, resume = true, wrap = true, close = true }
)
env._G = env
env.ctx = ctx

local function body(file, fname, input)
  sethook(hook, "", STEP)
  local chunk = loadfile_(file)
  if not chunk then error("handler_not_found: the bundle has no file " .. file, 0) end
  chunk()
  local f = rawget(env, fname)
  if type(f) ~= "function" then
    error("handler_not_found: " .. file .. " defines no function '" .. fname .. "'", 0)
  end
  local result = f(ctx, input)
  items = 0
  local okp, out = pcall_(plain, result, 0)
  after_protected(okp, out)
  if not okp then error(out, 0) end
  sethook()
  return out
end

local function msgh(e)
  if killed then return KILLMSG end
  local te = type(e)
  if te == "string" then
    if not utf8_len(e) then e = s_gsub(e, "[\128-\255]", "?") end
    return e
  end
  if te == "number" then return tostring(e) end
  return "(error object is a " .. te .. " value)"
end

return function(file, fname, input)
  return xpcall_(body, msgh, file, fname, input)
end
