"""Run one Lua handler in a fresh, locked-down Lua 5.4 state (lupa).

Guarantees, per run:

- A fresh ``lupa.lua54.LuaRuntime`` with ``register_eval=False``, ``register_builtins=False``,
  an attribute filter that refuses everything and the ``python`` global deleted. The
  handler's code runs in its own environment table, never the real ``_G``, holding only
  safe globals: ``assert error ipairs next pairs rawequal rawget rawlen rawset select
  tonumber tostring type getmetatable _VERSION`` plus wrapped ``pcall xpcall setmetatable
  collectgarbage("count") print load`` (text only, sandbox env) and ``require`` (bundle files
  only), ``string`` (no ``dump``; guarded patterns), ``table`` (guarded ``move``), ``math``,
  ``utf8``, a wrapped ``coroutine`` and ``os`` reduced to ``time clock date difftime``.
  No ``io``, ``debug``, ``package``, ``dofile``.
- No Python object is ever reachable from handler code: ctx functions are Lua closures
  around host callbacks held in upvalues; arguments are copied to plain tables in Lua
  (raw access, depth and size caps) before Python sees them; return values are Lua tables
  built by lupa; host exceptions become short plain-string Lua errors. The shared
  metatables (strings, lupa's wrapper) are locked with ``__metatable = false`` and the
  string metatable's ``__index`` points at the sandboxed ``string`` table.
- Limits: a count hook (every ``HOOK_STEP`` instructions) enforces the instruction budget and
  the wall-clock deadline; the deadline also covers ctx calls (checked before and after each,
  and handed to HTTP/SQL clients as their timeout). ``max_memory`` bounds the Lua heap.
  Once a limit is hit the kill is *sticky*: the hook is re-armed with count 1, and the
  emulated ``pcall``/``xpcall``/``coroutine.resume``/``coroutine.wrap`` rethrow it, so no
  Lua code can swallow it. Coroutines get the hook too. ``setmetatable`` refuses ``__gc``
  (finalizers run outside any budget). ``string.find/match/gmatch/gsub`` refuse patterns
  whose worst-case backtracking cost on the subject exceeds ``Limits.pattern_cost``.
  Standard-library calls whose C loops are not bounded by their arguments (``string.rep``,
  ``table.*``, ``collectgarbage("collect")``, compiling with ``load``/``require``) are priced
  against the budget, capped per call and weighed against the deadline (docs/sandbox.md
  lists them with why). Nested ``pcall`` depth is capped so recursion through ``pcall``
  cannot starve the hook. The deadline is checked again after the handler returns and after
  its result is copied: an overrun is a ``timeout``, never a success.
- The handler's result is copied to plain data inside the budget (hook still armed, raw
  access, depth/size caps) and only then converted in Python, so no metamethod ever runs
  outside the limits.

Error codes (``SandboxError.code``) recorded on a failed run:

=====================  =============================================================
``timeout``            wall-clock deadline passed (including time inside ctx calls)
``instruction_limit``  the instruction budget was used up
``memory_limit``       the Lua heap limit was reached
``stack_overflow``     Lua or C stack overflow (runaway recursion)
``log_limit``          more log lines or bytes than allowed
``result_too_large``   the result is bigger than allowed once encoded as JSON
``invalid_value``      a result or argument that is not plain data (function, NaN, bad UTF-8,
                       a table with both ``1`` and ``"1"``…)
``pattern_too_complex`` a string pattern refused by the cost guard
``call_too_costly``    one standard-library call that would do too much work in C at once
``source_too_large``   code given to ``load``/``require`` too large (or too slow) to compile
``syntax_error``       a bundle file does not compile
``handler_not_found``  the file does not define the handler's function
``lua_error``          any other error raised by the handler's code
``permission_denied``  a ctx call the manifest's permissions do not grant (message names it)
``invalid_alias``      an alias not declared in the manifest (or of the wrong kind)
``unbound_alias``      a declared alias with no device bound
``invalid_argument``   a ctx call with wrong arguments
``http_error``         the device could not be reached or answered badly
``response_too_large`` an HTTP response bigger than allowed
``sql_error``          the database refused the query
``too_many_rows``      a query returned more rows than allowed
``container_unknown``  a data container the manifest does not declare
``container_invalid``  a value that does not match its container's schema
``value_too_large``    a cached/stored value bigger than allowed
``quota_exceeded``     the instance's (or tenant's) storage quota, or tenant SQL's cap, is used up
``internal_error``     a fault on the platform's side (details are logged, not shown)
``interrupted``        the worker interrupted the run (e.g. Celery's soft time limit)
=====================  =============================================================

``file``/``line`` give the handler's location when known (for kills: where the code was
when it was stopped).
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import lupa.lua54 as lupa

from marketplace.packaging import contract

from .limits import Limits

logger = logging.getLogger(__name__)

HOOK_STEP = 1000
MAX_DEPTH = 32  # nesting of tables crossing the boundary
MAX_ITEMS = 100_000  # table entries crossing the boundary in one value
MAX_PCALL_DEPTH = 150  # below Lua's C-stack limit (200)
# One standard-library call may do at most this much priced work (instruction units,
# about 4 ns each: ~130 ms), so no single C call overruns the deadline
# by more than that before the hook looks at the clock again.
CALL_MAX_WORK = 1 << 25
# Source compiled by load/require: at most this many bytes (the bundle's own per-file cap) and
# this many and/or/elseif words (the parser is quadratic in them: 8,000 ≈ 0.15 s here).
SOURCE_MAX_BYTES = 256 * 1024
SOURCE_MAX_JUMPS = 8000
KILL_CODES = frozenset({"timeout", "instruction_limit", "memory_limit", "log_limit"})
# Codes a Lua error message may carry as a "code: message" prefix. Kill codes are not in
# this set: they are only ever set by the sandbox itself, never forged by handler code.
ERROR_CODES = frozenset(
    {
        "permission_denied", "invalid_alias", "unbound_alias", "invalid_argument", "http_error",
        "response_too_large", "sql_error", "too_many_rows", "container_unknown", "container_invalid",
        "value_too_large", "invalid_value", "pattern_too_complex", "syntax_error", "handler_not_found",
        "result_too_large", "internal_error", "quota_exceeded", "call_too_costly", "source_too_large",
    }
)


class Host(Protocol):
    """What the sandbox needs from the ctx side (see ``runtime.ctx.Ctx``)."""

    config: dict
    instance_info: dict
    logs: list

    def call(self, name: str, args: list, deadline: float) -> Any: ...


class HostError(Exception):
    """Raised by host callbacks: becomes a catchable Lua error ``"code: message"``."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RunStopped(HostError):
    """Raised by host callbacks to stop the run for good (sticky, like a limit)."""


@dataclass
class SandboxError:
    code: str
    message: str
    file: str | None = None
    line: int | None = None

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "file": self.file, "line": self.line}


@dataclass
class RunResult:
    status: str  # "succeeded" | "failed"
    result: Any = None
    error: SandboxError | None = None
    logs: list = field(default_factory=list)
    duration_ms: int = 0
    phases: dict = field(default_factory=dict)  # seconds per phase, for profiling

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


PRELUDE = r"""
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

-- The lazy library (LAZY_PRELUDE in sandbox.py), fetched from the host on a run's first need.
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
"""

LAZY_PRELUDE = r"""
-- Host code a run needs only when it uses it: the replacements of table.insert/remove/concat/
-- unpack/move/sort and coroutine.create/resume/wrap/close, the pattern analyser, the pricing
-- of large sources and the 1/"1" key check. Loaded (as bytecode) by the prelude's lazy() on a
-- run's first need, with what it needs from the prelude as arguments.
local work, loop, int, s_byte, m_max, m_log, t_concat, t_unpack, t_move, t_sort, s_gsub, s_sub, m_type, where,
      SRCMAX, JUMPMAX, check, after_protected, hook, sethook, STEP, co_create, co_resume, co_close, s_format,
      PATTERN_MAX = ...
local type, error, select, next, rawget, tostring = type, error, select, next, rawget, tostring
local lib = {}

-- The index just past the set ``[...]`` that starts at ``i`` (``]`` first in a set, or after
-- ``^``, is a member; ``%`` escapes the next character).
local function skip_set(p, i, n)
  i = i + 1
  if s_byte(p, i) == 94 then i = i + 1 end
  if s_byte(p, i) == 93 then i = i + 1 end
  while i <= n and s_byte(p, i) ~= 93 do
    if s_byte(p, i) == 37 then i = i + 1 end
    i = i + 1
  end
  return i + 1
end

-- The pattern read as items: each single-character class with its quantifier, each %b and
-- back-reference (they rescan the subject from where they start), each %f and plain
-- character. Returns what cost() needs: how many items backtrack, and where.
function lib.analyse(p, anchorable)
  local n, i = #p, 1
  local anchored = anchorable and s_byte(p, 1) == 94
  if anchored then i = 2 end
  local bt, quant, null, any = {}, {}, {}, {}
  local m, widest, dollar = 0, 0, false
  while i <= n do
    local c = s_byte(p, i)
    local single, scan, item, isany = true, false, true, false
    if c == 37 then -- %
      local nx = s_byte(p, i + 1)
      if nx == 98 then i = i + 4; single = false; scan = true           -- %bxy
      elseif nx and nx >= 48 and nx <= 57 then i = i + 2; single = false; scan = true  -- %1-%9
      elseif nx == 102 then                                            -- %f[set]
        i = i + 2; single = false
        if s_byte(p, i) == 91 then local j = skip_set(p, i, n); widest = m_max(widest, j - i); i = j end
      else i = i + 2 end
    elseif c == 91 then -- [set]: each test walks the set
      local j = skip_set(p, i, n); widest = m_max(widest, j - i); i = j
    elseif c == 40 or c == 41 then -- captures are not items
      i = i + 1; item = false
    elseif c == 36 and i == n then -- a final $ is the end anchor
      i = i + 1; item = false; dollar = true
    else
      isany = c == 46
      i = i + 1
    end
    if item then
      m = m + 1
      local qc = single and s_byte(p, i)
      if qc == 42 or qc == 43 or qc == 45 or qc == 63 then -- * + - ?
        i = i + 1
        bt[m], quant[m], null[m], any[m] = true, true, qc ~= 43, isany and (qc == 42 or qc == 45)
      else
        bt[m], quant[m], null[m], any[m] = scan, false, false, false
      end
    end
  end
  local function count_bt(to)
    local q = 0
    for k = 1, to do if bt[k] then q = q + 1 end end
    return q
  end
  local info = { anchored = anchored, widest = widest }
  -- Ending in $: from the first ".*"/".-" followed only by items that can match empty, the
  -- rest always matches (up to the end), so what comes before it never backtracks on its
  -- account: prefix and rest are priced apart.
  if dollar then
    for k = 1, m do
      if any[k] then
        local total = true
        for j = k + 1, m do if not null[j] then total = false; break end end
        if total then
          info.prefix = count_bt(k - 1)
          if k > 1 and quant[k - 1] then info.prefix = info.prefix - 1 end
          info.suffix = count_bt(m) - count_bt(k - 1)
          return info
        end
      end
    end
  end
  -- A quantifier with nothing after it (not even $) takes its expansion and is done; before
  -- $ it backtracks like any other (an unanchored search even tries it from every start).
  info.q = count_bt(m)
  if m > 0 and quant[m] and not dollar then info.q = info.q - 1 end
  return info
end

-- Table functions whose C loops run over a length the handler controls (through __len, or a
-- plain table's border, which can be 2^40 with 41 entries): the length is read once, in Lua,
-- and the loop is priced (concat, unpack, move, sort) or runs in Lua under the hook (insert,
-- remove).
local function checktable(t, fname)
  if type(t) ~= "table" then
    error("bad argument #1 to '" .. fname .. "' (table expected, got " .. type(t) .. ")", 3)
  end
end
local function len(t, fname)
  local n = int(#t)
  if n == nil then error("object length is not an integer", 3) end
  return n
end
lib.insert = function(t, ...)
  checktable(t, "insert")
  local e = len(t) + 1
  local nargs = select("#", ...)
  if nargs == 1 then t[e] = ...; return end
  if nargs ~= 2 then error("wrong number of arguments to 'insert'", 2) end
  local pos, v = ...
  local p = int(pos)
  if p == nil then error("bad argument #2 to 'insert' (number has no integer representation)", 2) end
  if p < 1 or p > e then error("bad argument #2 to 'insert' (position out of bounds)", 2) end
  loop(e - p, 4)
  for i = e, p + 1, -1 do t[i] = t[i - 1] end
  t[p] = v
end
lib.remove = function(t, pos)
  checktable(t, "remove")
  local size = len(t)
  local p = size
  if pos ~= nil then
    p = int(pos)
    if p == nil then error("bad argument #2 to 'remove' (number has no integer representation)", 2) end
    if p ~= size and (p < 1 or p > size + 1) then error("bad argument #2 to 'remove' (position out of bounds)", 2) end
  end
  local v = t[p]
  loop(size - p, 4)
  for i = p, size - 1 do t[i] = t[i + 1] end
  t[p < size and size or p] = nil
  return v
end
lib.concat = function(t, sep, i, j)
  checktable(t, "concat")
  if i == nil then i = 1 end
  if j == nil then j = len(t) end
  local a, b = int(i), int(j)
  if a and b and b >= a then work(((b + 0.0) - a + 1) * 16, "table.concat") end
  return t_concat(t, sep, i, j)
end
lib.unpack = function(t, i, j)
  if i == nil then i = 1 end
  if j == nil then j = len(t) end
  local a, b = int(i), int(j)
  if a and b and b >= a then work(((b + 0.0) - a + 1) * 4, "table.unpack") end
  return t_unpack(t, i, j)
end
lib.move = function(a1, f, e, t, a2)
  local a, b = int(f), int(e)
  if a and b and b >= a then work(((b + 0.0) - a + 1) * 8, "table.move") end
  return t_move(a1, f, e, t, a2)
end
lib.sort = function(t, comp)
  checktable(t, "sort")
  if comp ~= nil and type(comp) ~= "function" then
    error("bad argument #2 to 'sort' (function expected, got " .. type(comp) .. ")", 2)
  end
  local n = len(t)
  if n < 2 then return end
  if n >= 2147483647 then error("bad argument #1 to 'sort' (array too big)", 2) end
  -- Sorted as a plain copy, whose length C cannot see differently (t's __len could answer
  -- C's own call with another number); n·log2(n) comparisons at ~30 ns each.
  work(n * (m_log(n, 2) + 1) * 8 + n * 16, "table.sort")
  local a = t_move(t, 1, n, 1, {})
  t_sort(a, comp)
  t_move(a, 1, n, 1, t)
end

-- Coroutines get the hook, and their errors the kill's stickiness.
function lib.create(f)
  check()
  if type(f) ~= "function" then error("bad argument #1 to 'create' (function expected)", 2) end
  local co = co_create(f)
  sethook(co, hook, "", STEP)
  return co
end
local function rfinish(ok, ...)
  after_protected(ok, (...))
  return ok, ...
end
function lib.resume(co, ...)
  check()
  return rfinish(co_resume(co, ...))
end
local function wfinish(ok, ...)
  if ok then return ... end
  error((...), 0)
end
function lib.wrap(f)
  local co = lib.create(f)
  return function(...) return wfinish(lib.resume(co, ...)) end
end
function lib.close(co)
  check()
  return rfinish(co_close(co))
end


-- Ways to share n subject bytes among e backtracking items: C(n + e, e), an upper bound on
-- the paths Lua's matcher can try (stops growing once past any cap).
local function paths(n, e)
  local c = 1
  for k = 1, e do
    c = c * (n + k) / k
    if c > 1e30 then return c end
  end
  return c
end

-- Analyses cached by pattern (a run calls the same few patterns over and over).
local acache, gcache, acount = {}, {}, 0

-- The worst-case steps of pattern p (with magic characters) on an n-byte subject.
function lib.cost(p, n, unanchorable)
  local cache = unanchorable and gcache or acache
  local info = cache[p]
  if info == nil then
    if acount >= 256 then acache, gcache, acount = {}, {}, 0; cache = unanchorable and gcache or acache end
    info = lib.analyse(p, not unanchorable)
    cache[p] = info
    acount = acount + 1
  end
  local cost
  local starts = info.anchored and 0 or 1
  if info.prefix then
    cost = paths(n, info.prefix + starts) + paths(n, info.suffix)
  elseif info.q <= 0 then
    cost = starts == 1 and n * #p or #p
  else
    cost = paths(n, info.q + starts)
  end
  if info.widest > 16 then cost = cost * info.widest / 16 end
  return cost
end

function lib.refuse(cost, n)
  error(where() .. "pattern_too_complex: this pattern could take about " .. s_format("%.3g", cost)
        .. " steps on a " .. n .. "-byte string (at most " .. s_format("%.3g", PATTERN_MAX)
        .. "); match smaller pieces", 0)
end

local function jumps(src)
  local _, a = s_gsub(src, "%f[%w_]and%f[^%w_]", "")
  local _, o = s_gsub(src, "%f[%w_]or%f[^%w_]", "")
  local _, e = s_gsub(src, "%f[%w_]elseif%f[^%w_]", "")
  return a + o + e
end

-- What compiling src costs, in instruction units; source_too_large when it is over the caps.
function lib.parse_units(src, name)
  local n = #src
  if n > SRCMAX then
    error(where() .. "source_too_large: " .. s_sub(name, 2) .. " is " .. n .. " bytes (at most " .. SRCMAX .. ")", 0)
  end
  local k = jumps(src)
  if k > JUMPMAX then
    error(where() .. "source_too_large: " .. s_sub(name, 2) .. " has " .. k .. " and/or/elseif (at most "
          .. JUMPMAX .. "): compiling it could take too long", 0)
  end
  return n * 4 + k * k
end

-- Keys become strings in JSON: 1 and "1" in one table would silently become one entry.
function lib.clash(out)
  for key in next, out do
    if m_type(key) == "integer" and rawget(out, tostring(key)) ~= nil then
      error("invalid_value: a table has both the key " .. key .. ' and the key "' .. key
            .. '" (keys become strings in JSON)', 0)
    end
  end
end

return lib
"""

_LOCATION = re.compile(r"^(?P<file>[\w./-]+\.lua):(?P<line>\d+): ")
_CODE = re.compile(r"^(?P<code>[a-z_]+): ")
_prelude_bytecode: bytes | None = None
_lazy_bytecode: bytes | None = None


def _deny_attributes(obj, attr_name, is_setting):
    raise AttributeError("access denied")


def _compile(source: str) -> bytes:
    """Trusted host code compiled once per process (by a throw-away runtime) to stripped
    bytecode: never handler code."""
    builder = lupa.LuaRuntime(register_eval=False, register_builtins=False, encoding=None)
    return builder.execute(
        "local src = ...; return string.dump(assert(load(src, '=[junction]', 't')), true)", source.encode()
    )


_CTX_MARKER = "--[[ctx functions]]"
_LUA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _ctx_fields() -> str:
    """The prelude's ctx table entries, one ``fn(name, max_args)`` per contract function,
    nested by the dots in the name (``device = { http = fn("device.http", 2), ... }``)."""
    tree: dict = {}
    for function in contract.FUNCTIONS:
        *namespaces, leaf = function.path
        if not all(_LUA_NAME.match(part) for part in function.path):  # pragma: no cover - a contract typo
            raise ValueError(f"ctx function {function.name!r} is not a dotted Lua name")
        node = tree
        for part in namespaces:
            node = node.setdefault(part, {})
        node[leaf] = f'fn("{function.name}", {int(function.max_args)})'

    def render(node: dict) -> str:
        return "".join(f"{key} = {{ {render(value)}}}, " if isinstance(value, dict) else f"{key} = {value}, "
                       for key, value in node.items())

    return render(tree)


def _prelude_source() -> str:
    if PRELUDE.count(_CTX_MARKER) != 1:  # pragma: no cover - an edit of the prelude lost it
        raise RuntimeError("the prelude has no ctx functions marker")
    return PRELUDE.replace(_CTX_MARKER, _ctx_fields())


def _prelude_loader(lua):
    """The prelude, loaded as bytecode; the lazy library's bytecode rides along (see
    ``LAZY_PRELUDE``)."""
    global _prelude_bytecode, _lazy_bytecode
    if _prelude_bytecode is None:
        _lazy_bytecode = _compile(LAZY_PRELUDE)
        _prelude_bytecode = _compile(_prelude_source())
    chunk = lua.globals().load(_prelude_bytecode, "=[junction]", "b")
    if isinstance(chunk, tuple):  # pragma: no cover - (nil, message)
        raise RuntimeError(f"prelude does not load: {chunk[1]}")
    return chunk


def from_lua(value: Any) -> Any:
    """Convert a *plain copy* made by the prelude (no metatables, raw keys) to JSON-able
    Python. Arrays (keys 1..n) become lists; other tables dicts with string keys."""
    if lupa.lua_type(value) != "table":
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return value
    items = list(value.items())
    if not items:
        return {}
    keys = [k for k, _ in items]
    if all(type(k) is int for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
        return [from_lua(v) for _, v in sorted(items, key=lambda kv: kv[0])]
    return {(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): from_lua(v) for k, v in items}


_SCALARS = (type(None), bool, int, float, str, bytes)
# json.dumps builds a new encoder on every call when given options; this one is built once.
_RESULT_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_FLAT = frozenset({type(None), bool, int, float, str})


def _plain_tree(value: Any, depth: int = 0) -> Any:
    """A copy holding only JSON-like data: anything else becomes its string form, so no
    Python object can ride into Lua inside a table (table_from would wrap it)."""
    if isinstance(value, _SCALARS):
        return value
    if depth > 64:
        raise ValueError("value nested too deeply")
    if isinstance(value, dict):
        return {(k if isinstance(k, (str, int)) and not isinstance(k, bool) else str(k)): _plain_tree(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_tree(v, depth + 1) for v in value]
    return str(value)


def to_lua(lua, value: Any) -> Any:
    """Python plain data to Lua values: dicts/lists become fresh Lua tables (never proxies)."""
    if isinstance(value, _SCALARS):
        return value
    if type(value) is dict and all(type(k) is str and type(v) in _FLAT for k, v in value.items()):
        # The common case (config, instance info, small inputs): one flat level of plain data
        # converts as it is, without the copy and the recursive walk.
        return lua.table_from(value)
    if isinstance(value, (dict, list, tuple)):
        return lua.table_from(_plain_tree(value), recursive=True)
    return str(value)


def _parse_error(message: str) -> SandboxError:
    file = line = None
    code = "lua_error"
    text = message
    for _ in range(2):
        m = _LOCATION.match(text)
        if m and file is None:
            file, line = m.group("file"), int(m.group("line"))
            text = text[m.end():]
            continue
        m = _CODE.match(text)
        if m and m.group("code") in ERROR_CODES and code == "lua_error":
            code = m.group("code")
            text = text[m.end():]
            continue
        break
    if code == "lua_error":
        if "stack overflow" in text:
            code = "stack_overflow"
        elif text == "not enough memory":
            code, text = "memory_limit", "memory limit reached"
    return SandboxError(code=code, message=text[:2000], file=file, line=line)


def run_lua(
    *,
    source: Callable[[str], str | None] | Mapping[str, str],
    file: str,
    function: str,
    input: Any,
    host: Host,
    limits: Limits,
) -> RunResult:
    """Run ``function`` of bundle file ``file`` as ``function(ctx, input)`` under ``limits``.

    ``source`` maps a bundle path to its Lua source (a mapping or a callable returning None
    when missing). Never raises for anything the handler does: failures come back as a
    ``RunResult`` with ``status == "failed"`` and an ``error``.
    """
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    started = time.monotonic()
    deadline = started + limits.timeout_ms / 1000.0
    get_source = source.get if type(source) is dict or isinstance(source, Mapping) else source
    kill: dict = {}

    def on_kill(code, message, kfile, kline):
        if not kill:
            kill.update(code=code, message=message, file=kfile, line=kline)

    lua = lupa.LuaRuntime(
        register_eval=False,
        register_builtins=False,
        unpack_returned_tuples=True,
        attribute_filter=_deny_attributes,
        max_memory=0,
    )

    # host_call reaches the runtime through this holder, cleared after the run: no reference
    # cycle, so the Lua state (and its heap) is freed at once, not by a later GC pass.
    holder = [lua]

    def host_call(name, n, args):
        try:
            if name == "__source":  # the prelude asking for a bundle file's source
                return get_source(args) if isinstance(args, str) else None
            if name == "__lazy":  # the prelude's lazy library, on the run's first need
                return _lazy_bytecode
            pyargs = [from_lua(args[i]) for i in range(1, n + 1)]
            value = host.call(name, pyargs, deadline)
            return True, to_lua(holder[0], value)
        except RunStopped as exc:
            on_kill(exc.code, exc.message, None, None)
            return False, exc.code, exc.message, True
        except HostError as exc:
            return False, exc.code, exc.message
        except lupa.LuaMemoryError:
            return False, "internal_error", "not enough memory"
        except (ValueError, RecursionError) as exc:  # a value too deep or odd to hand to Lua
            return False, "invalid_value", f"{name} returned a value that cannot be passed to Lua: {exc}"[:300]
        except Exception as exc:  # a platform fault: logged here, a short string for Lua
            if exc.__class__.__name__ == "SoftTimeLimitExceeded":
                on_kill("timeout", "the worker's time limit was reached", None, None)
                return False, "timeout", "the worker's time limit was reached", True
            logger.exception("ctx call %s failed", name)
            return False, "internal_error", f"{name} failed on the platform's side"

    t1 = time.perf_counter()
    phases["runtime"] = t1 - t0
    prelude = run = lua_input = value = None
    try:
        prelude = _prelude_loader(lua)
        t2 = time.perf_counter()
        phases["prelude_load"] = t2 - t1
        run = prelude(
            host_call,
            time.monotonic,
            on_kill,
            HOOK_STEP,
            limits.instructions,
            deadline,
            limits.pattern_cost,
            MAX_DEPTH,
            MAX_ITEMS,
            MAX_PCALL_DEPTH,
            CALL_MAX_WORK,
            SOURCE_MAX_BYTES,
            SOURCE_MAX_JUMPS,
            limits.memory_mb * 1024 * 1024,
            to_lua(lua, host.config or {}),
            to_lua(lua, host.instance_info or {}),
        )
        lua_input = to_lua(lua, input if input is not None else {})
        t3 = time.perf_counter()
        phases["setup"] = t3 - t2
        lua.set_max_memory(limits.memory_mb * 1024 * 1024, total=False)
        ok, value = run(file, function, lua_input)
        t4 = time.perf_counter()
        phases["run"] = t4 - t3
    except lupa.LuaMemoryError:
        ok, value = False, "not enough memory"
    except Exception as exc:  # the prelude catches handler errors: this is the platform's side
        if exc.__class__.__name__ == "SoftTimeLimitExceeded":
            on_kill("timeout", "the worker's time limit was reached", None, None)
        else:
            logger.exception("sandbox failure")
        ok, value = False, "internal_error: the run failed on the platform's side"
    t4 = time.perf_counter()

    error: SandboxError | None = None
    result = None
    if kill:
        error = SandboxError(**kill)
    elif not ok:
        error = _parse_error(value if isinstance(value, str) else str(value))
    else:
        try:
            result = from_lua(value)
            encoded = _RESULT_ENCODER.encode(result)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            error = SandboxError("invalid_value", f"the result is not plain data: {exc}"[:300])
            result = None
        else:
            if len(encoded.encode()) > limits.result_bytes:
                error = SandboxError(
                    "result_too_large", f"the result is larger than {limits.result_bytes} bytes as JSON"
                )
                result = None
    if error is None and time.monotonic() > deadline:
        # Whatever ran past the deadline unseen (the last C call, the result's conversion)
        # makes the run a timeout, never a success.
        error = SandboxError("timeout", "wall-clock time limit reached")
        result = None
    t5 = time.perf_counter()
    phases["result"] = t5 - t4
    holder.clear()
    del lua, run, prelude, lua_input, value
    phases["close"] = time.perf_counter() - t5
    duration_ms = int(math.ceil((time.monotonic() - started) * 1000))
    return RunResult(
        status="failed" if error else "succeeded",
        result=result,
        error=error,
        logs=list(host.logs),
        duration_ms=duration_ms,
        phases=phases,
    )
