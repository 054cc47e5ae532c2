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
