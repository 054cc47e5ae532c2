"""The sandbox: what handler code can reach, and how runaway code is stopped.

Every limit test asserts the error code (never the elapsed time)."""
from __future__ import annotations

import pytest

from runtime.stores import MemoryStore

from .conftest import small_limits


def test_a_handler_runs_and_returns_plain_data(run_code):
    outcome = run_code(
        'function h(ctx, input) return { ok = true, n = input.n + 1, list = {1, 2, 3}, name = ctx.instance.name } end',
        input={"n": 41},
    )
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result == {"ok": True, "n": 42, "list": [1, 2, 3], "name": "test"}


def test_ctx_is_also_a_global(run_code):
    outcome = run_code("function h(c, input) return rawequal(c, ctx) end")
    assert outcome.result is True


# --- escapes -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "expression",
    [
        "os.execute", "os.getenv", "os.exit", "os.remove", "io", "debug", "package", "dofile", "loadfile",
        "python", "string.dump", "collectgarbage ~= nil and nil", "rawget(_G, 'python')",
        "getfenv", "setfenv", "loadstring", "module", "newproxy",
    ],
)
def test_dangerous_globals_are_absent(run_code, expression):
    outcome = run_code(f"function h(ctx, input) return {{ v = ({expression}) == nil }} end")
    assert outcome.result == {"v": True}, outcome.error


def test_require_only_loads_bundle_files(run_code):
    outcome = run_code(
        'function h(ctx, input) local u = require("util"); return { u.twice(21), pcall(require, "os") } end',
        files={"util.lua": "local M = {}\nfunction M.twice(x) return x * 2 end\nreturn M\n"},
    )
    assert outcome.result[0] == 42
    assert outcome.result[1] is False
    assert "not found in the bundle" in outcome.result[2]


def test_load_refuses_bytecode_and_runs_text_in_the_sandbox(run_code):
    outcome = run_code(
        r"""function h(ctx, input)
          local f, err = load("\27LuaT\0\25\147\13\10\26\10\4\8\8xV\0\0\0\0\0\0\0\0\0\0\0(w@")
          local g = load("return io, os.execute, ctx ~= nil")
          local a, b, c = g()
          return { f == nil, err, a == nil, b == nil, c }
        end"""
    )
    assert outcome.result[0] is True
    assert "binary chunk" in outcome.result[1]
    assert outcome.result[2:] == [True, True, True]


def test_load_refuses_reader_functions(run_code):
    outcome = run_code('function h(ctx, input) return load(function() return nil end) end')
    assert outcome.error.code == "lua_error"
    assert "only source strings" in outcome.error.message


def test_the_string_metatable_is_locked(run_code):
    outcome = run_code(
        """function h(ctx, input)
          local mt = getmetatable("")
          local ok = pcall(function() getmetatable("").__index.upper = nil end)
          return { mt = mt, ok = ok }
        end"""
    )
    assert outcome.result == {"mt": False, "ok": False}


def test_string_methods_use_the_guarded_string_table(run_code):
    outcome = run_code(
        'function h(ctx, input) local s = ("a"):rep(5000); local r = s:find(".-.-.-b"); return r end'
    )
    assert outcome.error.code == "pattern_too_complex"
    assert outcome.error.line == 1


def test_a_global_does_not_leak_into_the_next_run(run_code):
    store = MemoryStore()
    first = run_code("function h(ctx, input) leaked = 1; string.leaked = 2; math.pi = 3; return true end", store=store)
    second = run_code("function h(ctx, input) return { leaked == nil, string.leaked == nil, math.pi > 3.14 } end",
                      store=store)
    assert first.ok
    assert second.result == [True, True, True]


def test_ctx_functions_and_tables_have_no_metatable(run_code):
    outcome = run_code(
        """function h(ctx, input)
          return { getmetatable(ctx.device.http) == nil, getmetatable(ctx) == nil,
                   getmetatable(ctx.log) == nil, type(ctx.log.info) }
        end"""
    )
    assert outcome.result == [True, True, True, "function"]


def test_ctx_functions_cannot_be_taken_apart(run_code):
    """No debug library, no string.dump: the host callback inside a ctx function is unreachable."""
    outcome = run_code(
        """function h(ctx, input)
          local ok1 = pcall(string.dump, ctx.log.info)
          return { ok1, debug == nil, tostring(ctx.log.info):match("^function") ~= nil }
        end"""
    )
    assert outcome.result == [False, True, True]


def test_gc_metamethods_are_refused(run_code):
    outcome = run_code("function h(ctx, input) setmetatable({}, { __gc = function() while true do end end }) end")
    assert outcome.error.code == "lua_error"
    assert "__gc" in outcome.error.message
    assert (outcome.error.file, outcome.error.line) == ("main.lua", 1)


def test_collectgarbage_is_limited(run_code):
    outcome = run_code('function h(ctx, input) return { type(collectgarbage("count")), pcall(collectgarbage, "stop") } end')
    assert outcome.result[0] == "number"
    assert outcome.result[1] is False


def test_results_are_copied_raw_so_metamethods_never_run(run_code):
    outcome = run_code(
        """function h(ctx, input)
          local loop = function() while true do end end
          return setmetatable({ a = 1 }, { __index = loop, __pairs = loop, __len = loop, __tostring = loop })
        end"""
    )
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result == {"a": 1}


def test_an_error_object_with_tostring_is_not_called(run_code):
    outcome = run_code(
        "function h(ctx, input) error(setmetatable({}, { __tostring = function() while true do end end })) end"
    )
    assert outcome.error.code == "lua_error"
    assert outcome.error.message == "(error object is a table value)"


@pytest.mark.parametrize(
    "body, needle",
    [
        ("return print", "function"),
        ("return coroutine.create(function() end)", "thread"),
        ("local t = {}; t.self = t; return t", "nested too deeply"),
        ("return 0/0", "NaN"),
        ("return { [{}] = 1 }", "keys"),
        ('return "\\xff\\xfe"', "UTF-8"),
    ],
)
def test_results_must_be_plain_data(run_code, body, needle):
    outcome = run_code(f"function h(ctx, input) {body} end")
    assert outcome.error.code == "invalid_value"
    assert needle in outcome.error.message


def test_a_result_too_large_is_refused(run_code):
    outcome = run_code('function h(ctx, input) return string.rep("x", 3000) end', limits=small_limits(result_bytes=2000))
    assert outcome.error.code == "result_too_large"
    assert outcome.result is None


# --- errors and their locations ------------------------------------------------------------

def test_a_lua_error_has_file_and_line(run_code):
    outcome = run_code("function h(ctx, input)\n  local x = nil\n  return x.y\nend")
    assert outcome.error.code == "lua_error"
    assert (outcome.error.file, outcome.error.line) == ("main.lua", 3)
    assert "attempt to index" in outcome.error.message


def test_a_syntax_error_has_file_and_line(run_code):
    outcome = run_code("function h(ctx, input)\n  return ) \nend")
    assert outcome.error.code == "syntax_error"
    assert (outcome.error.file, outcome.error.line) == ("main.lua", 2)


def test_a_missing_function_is_handler_not_found(run_code):
    outcome = run_code("function other() end")
    assert outcome.error.code == "handler_not_found"


def test_handler_code_cannot_forge_a_limit_code(run_code):
    outcome = run_code('function h(ctx, input) error("timeout: fake", 0) end')
    assert outcome.error.code == "lua_error"


# --- runaway code --------------------------------------------------------------------------

LIMITS = small_limits(instructions=300_000, timeout_ms=20_000)


@pytest.mark.parametrize(
    "body",
    [
        "while true do end",
        "local i = 0 repeat i = i + 1 until false",
        # pcall-swallowing loops
        "while true do pcall(function() while true do end end) end",
        "while true do pcall(error) end",
        "for i = 1, 1e12 do xpcall(function() while true do end end, function() while true do end end) end",
        # coroutine loops
        "local co = coroutine.wrap(function() while true do end end) while true do pcall(co) end",
        "local co = coroutine.create(function() while true do coroutine.yield() end end) "
        "while true do coroutine.resume(co) end",
        "local co = coroutine.create(function() while true do end end) "
        "while true do local ok, e = coroutine.resume(co) end",
        # recursion through pcall: exponential, near the C-stack limit
        "local function f() pcall(f) pcall(f) end f()",
        # a loop in a to-be-closed variable's __close while unwinding
        "local x <close> = setmetatable({}, { __close = function() while true do end end }) while true do end",
        # a loop in table.sort's comparator and in gsub's replacement function
        "local t = {} for i = 1, 100 do t[i] = i end table.sort(t, function(a, b) while true do end end)",
        'string.gsub(string.rep("a", 100), "a", function() while true do end end)',
    ],
)
def test_runaway_code_hits_the_instruction_limit(run_code, body):
    outcome = run_code(f"function h(ctx, input) {body} end", limits=LIMITS)
    assert outcome.status == "failed"
    assert outcome.error.code == "instruction_limit", outcome.error


def test_the_kill_is_sticky_inside_pcall(run_code):
    """After the limit, code in pcall's error branch never runs long enough to matter."""
    outcome = run_code(
        """function h(ctx, input)
          local caught = 0
          for i = 1, 10 do
            local ok = pcall(function() while true do end end)
            caught = caught + 1
            ctx.log.info("survived", { caught = caught })
          end
          return caught
        end""",
        limits=LIMITS,
    )
    assert outcome.error.code == "instruction_limit"
    assert outcome.logs == []


def test_a_wall_clock_timeout(run_code):
    outcome = run_code(
        "function h(ctx, input) while true do pcall(function() end) end end",
        limits=small_limits(timeout_ms=200, instructions=10**9),
    )
    assert outcome.error.code == "timeout"
    assert outcome.error.file == "main.lua"


@pytest.mark.parametrize(
    "body",
    [
        "local t = {} for i = 1, 1e9 do t[i] = i end",
        'return string.rep("x", 1e9)',
        'local s = "x" while true do s = s .. s end',
        # pcall cannot swallow the memory limit
        'for i = 1, 1000 do pcall(function() local t = {} for j = 1, 1e9 do t[j] = j end end) end return "survived"',
        'for i = 1, 1000 do pcall(string.rep, "x", 1e9) end return "survived"',
    ],
)
def test_memory_bombs_hit_the_memory_limit(run_code, body):
    outcome = run_code(f"function h(ctx, input) {body} end", limits=small_limits(memory_mb=8, instructions=10**9))
    assert outcome.error.code == "memory_limit", outcome.error


def test_deep_recursion_is_stopped(run_code):
    outcome = run_code(
        "function h(ctx, input) local function f(n) return 1 + f(n + 1) end return f(1) end",
        limits=small_limits(memory_mb=64, instructions=10**9),
    )
    assert outcome.error.code in {"stack_overflow", "memory_limit"}, outcome.error


def test_deep_recursion_with_a_small_heap_is_a_memory_limit(run_code):
    outcome = run_code(
        "function h(ctx, input) local function f(n) return 1 + f(n + 1) end return f(1) end",
        limits=small_limits(memory_mb=4, instructions=10**9),
    )
    assert outcome.error.code == "memory_limit"


def test_pcall_nesting_is_capped(run_code):
    outcome = run_code(
        "function h(ctx, input) local function f(n) local ok, e = pcall(f, n + 1) if not ok then error(e, 0) end end f(1) end"
    )
    assert outcome.error.code == "stack_overflow"


@pytest.mark.parametrize(
    "call",
    [
        'string.find(string.rep("a", 5000), ".-.-b")',
        'string.match(string.rep("a", 2000), "(.*)(.*)(.*)b")',
        'string.gsub(string.rep("a", 20000), "a.-b", "")',
        'for w in string.gmatch(string.rep("a", 1000), "a*a*a*b") do end',
        # balanced matches and back-references rescan the subject from every start
        'string.find(string.rep("(", 200000), "%b()")',
        'string.find(string.rep("a", 200000), "(a+)%1b")',
        # plain search is n × m too
        'string.find(string.rep("a", 1000000), string.rep("a", 1000) .. "b", 1, true)',
        'string.find(string.rep("a", 1000000), string.rep("a", 1000) .. "b")',
    ],
)
def test_pathological_patterns_are_refused(run_code, call):
    outcome = run_code(f"function h(ctx, input) {call} end", limits=small_limits(instructions=10**9))
    assert outcome.error.code == "pattern_too_complex"


def test_ordinary_patterns_on_large_strings_still_work(run_code):
    outcome = run_code(
        r"""function h(ctx, input)
          local body = string.rep(" ", 5000) .. "key=value" .. string.rep(" ", 5000)
          local trimmed = body:match("^%s*(.-)%s*$")
          local k, v = trimmed:match("(%w+)=(%w+)")
          local n = select(2, string.gsub(string.rep("a,", 10000), ",", ";"))
          local plain = string.find(string.rep("a", 100000) .. ".-b", ".-b", 1, true)
          return { trimmed, k, v, n, plain }
        end"""
    )
    assert outcome.result == ["key=value", "key", "value", 10000, 100001], outcome.error


def test_ctx_calls_refuse_extra_arguments(run_code):
    outcome = run_code(
        """function h(ctx, input)
          local big = {} for i = 1, 100000 do big[i] = i end
          local ok, err = pcall(ctx.log.info, table.unpack(big))
          return err
        end""",
        limits=small_limits(instructions=10**8, memory_mb=64),
    )
    assert "invalid_argument" in outcome.result
    assert "at most 2 arguments" in outcome.result


def test_ctx_refuses_functions_as_arguments(run_code):
    outcome = run_code('function h(ctx, input) ctx.log.info("x", { f = print }) end')
    assert outcome.error.code == "invalid_value"
    assert outcome.error.line == 1


def test_an_exception_escaping_the_host_never_reaches_handler_code():
    """E.g. Celery's SoftTimeLimitExceeded arriving inside a ctx call: the run stops."""
    from runtime.sandbox import run_lua

    class Interrupting:
        config, instance_info, logs = {}, {}, []

        def call(self, name, args, deadline):
            raise KeyboardInterrupt  # not an Exception: escapes the host's own handler

    outcome = run_lua(
        source={"main.lua": """function h(ctx, input)
          local ok, err = pcall(ctx.log.info, "x")
          return { ok = ok, kind = type(err) }
        end"""},
        file="main.lua", function="h", input={}, host=Interrupting(), limits=small_limits(),
    )
    assert outcome.error.code == "interrupted"
    assert outcome.result is None


def test_a_soft_time_limit_inside_a_ctx_call_is_a_timeout(run_code):
    from runtime.sandbox import run_lua

    class SoftTimeLimitExceeded(Exception):
        pass

    class Host:
        config, instance_info, logs = {}, {}, []

        def call(self, name, args, deadline):
            raise SoftTimeLimitExceeded()

    outcome = run_lua(
        source={"main.lua": 'function h(ctx, input) for i = 1, 3 do pcall(ctx.log.info, "x") end return 1 end'},
        file="main.lua", function="h", input={}, host=Host(), limits=small_limits(),
    )
    assert outcome.error.code == "timeout"


def test_table_move_refuses_huge_ranges(run_code):
    outcome = run_code("function h(ctx, input) table.move({}, 1, 1e15, 2) end")
    assert outcome.error.code == "call_too_costly"
    assert "table.move" in outcome.error.message
    ordinary = run_code("function h(ctx, input) return table.move({1, 2, 3}, 1, 3, 2) end")
    assert ordinary.result == [1, 1, 2, 3]


def test_host_values_reach_lua_as_plain_tables_only(run_code):
    import datetime
    import decimal

    outcome = run_code(
        "function h(ctx, input) return { type(input.when), type(input.amount), type(input.nested[1].obj), input.nested[1].n } end",
        input={"when": datetime.date(2026, 1, 2), "amount": decimal.Decimal("1.5"), "nested": [{"obj": object(), "n": 1}]},
    )
    assert outcome.result == ["string", "string", "string", 1]


def test_an_error_message_that_is_not_utf8(run_code):
    outcome = run_code('function h(ctx, input) error("bad \\255 byte") end')
    assert outcome.error.code == "lua_error"
    assert outcome.error.message == "bad ? byte"


def test_the_pattern_guard_reads_sets_and_frontiers(run_code):
    """``[...]`` and ``%f[...]`` are read as one item each, ``]`` and ``%]`` inside included."""
    outcome = run_code(
        r"""function h(ctx, input)
          return { string.match("x]y", "[]x]+"), string.match("a]b", "[^%]]+"),
                   string.find("THE (quick) fox", "%f[%a]%a+", 5), string.match("k=v", "[%w]+=([^]]-)$") }
        end"""
    )
    assert outcome.result == ["x]", "a", 6, "v"], outcome.error
    slow = run_code('function h(ctx, input) string.find(string.rep("a", 5000), "[a]-[%a]-[]b]") end',
                    limits=small_limits(instructions=10**9))
    assert slow.error.code == "pattern_too_complex"
