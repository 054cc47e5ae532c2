"""Work the hook cannot see: standard-library calls that loop in C, Lua's parser, the pattern
matcher, and what happens after the handler returns. One test per reproduction of issue 9
and per guarded function, each asserting the error code (never the elapsed time), and the
ordinary uses that must keep working."""
from __future__ import annotations

import pytest

from runtime.limits import platform_limits
from runtime.sandbox import SOURCE_MAX_BYTES, run_lua
from runtime.stores import MemoryStore

from .conftest import small_limits

# The reproductions were run with the platform's defaults and a 1 s timeout.
REPRO = platform_limits().with_(timeout_ms=1000)


def body(code: str) -> str:
    return f"function h(ctx, input)\n{code}\nend"


# --- issue 9, section 1: loops inside C functions -----------------------------------------

@pytest.mark.parametrize(
    "code, expected",
    [
        ('return string.rep("", 8e9)', "call_too_costly"),
        ('return string.rep("", math.maxinteger)', "call_too_costly"),
        ('return ("").rep("", 1e9, "")', "call_too_costly"),
        ('table.insert(setmetatable({}, {__len = function() return 2e9 end}), 1, "x")', "instruction_limit"),
        ('table.remove(setmetatable({}, {__len = function() return 2e9 end}), 1)', "instruction_limit"),
        ('load("return a" .. string.rep(" and a", 80000))', "source_too_large"),
    ],
)
def test_issue_reproductions_end_within_their_limits(run_code, code, expected):
    outcome = run_code(body(code), limits=REPRO)
    assert outcome.status == "failed"
    assert outcome.error.code == expected, outcome.error


def test_string_rep_is_priced_against_the_budget(run_code):
    """Under the per-call cap, an empty string.rep still uses budget for its loop."""
    outcome = run_code(body('for i = 1, 100 do string.rep("", 1e6) end'), limits=small_limits(instructions=5_000_000))
    assert outcome.error.code == "instruction_limit"


def test_string_rep_larger_than_the_heap_is_a_memory_limit(run_code):
    outcome = run_code(body('return string.rep("x", 1e9)'), limits=small_limits(memory_mb=8))
    assert outcome.error.code == "memory_limit"


def test_string_rep_ordinary_uses(run_code):
    outcome = run_code(body(
        'return { string.rep("ab", 3), ("a"):rep(3, ","), #string.rep("ab", 1000), string.rep("x", 0),'
        ' string.rep("x", -1), #string.rep("abcdefgh", 2^18), string.rep("", 1000) }'
    ))
    assert outcome.result == ["ababab", "a,a,a", 2000, "", "", 8 * 2**18, ""], outcome.error


def test_a_plain_table_with_a_huge_border_cannot_stall_insert(run_code):
    """t[2], t[4] ... t[2^40], then t[1]: #t is 2^40 without any metatable."""
    length = run_code(body("local t = {} for i = 1, 40 do t[2^i] = i end t[1] = 0 return #t"))
    assert length.result == 2**40
    outcome = run_code(body('local t = {} for i = 1, 40 do t[2^i] = i end t[1] = 0 table.insert(t, 1, "x")'), limits=REPRO)
    assert outcome.error.code == "instruction_limit"


@pytest.mark.parametrize(
    "code",
    [
        'table.concat(setmetatable({}, {__len = function() return 2e9 end, __index = function() return "" end}))',
        'table.concat(setmetatable({}, {__index = type}), "", 1, 1e9)',
        "table.unpack(setmetatable({}, {__len = function() return 1e8 end}))",
        "table.unpack({}, 1, 1e8)",
        "table.move({}, 1, 1e15, 2)",
        "table.move(setmetatable({}, {__index = rawequal}), 1, 1e8, 1, setmetatable({}, {__newindex = rawequal}))",
        # C comparisons and C metamethods only: nothing the hook would ever see
        "table.sort(setmetatable({}, {__len = function() return 2^31 - 2 end, __index = rawlen, __newindex = rawequal}))",
    ],
)
def test_table_functions_refuse_loops_over_huge_lengths(run_code, code):
    outcome = run_code(body(code), limits=REPRO)
    assert outcome.error.code == "call_too_costly", outcome.error


def test_table_functions_are_priced_against_the_budget(run_code):
    outcome = run_code(
        body("local t = {} for i = 1, 1000 do t[i] = i end for i = 1, 10000 do table.concat(t, ',') end"),
        limits=small_limits(instructions=5_000_000),
    )
    assert outcome.error.code == "instruction_limit"


def test_table_functions_ordinary_uses(run_code):
    outcome = run_code(body("""
      local t = {}
      table.insert(t, "b") table.insert(t, 1, "a") table.insert(t, 3, "d") table.insert(t, 3, "c")
      local removed = { table.remove(t, 1), table.remove(t), table.remove({}), table.remove({}, 0) }
      local s = {5, 3, 1, 4, 2} table.sort(s)
      local r = {"b", "c", "a"} table.sort(r, function(x, y) return x > y end)
      local big = {} for i = 1, 2000 do big[i] = (i * 7919) % 2011 end table.sort(big)
      return {
        t = t, removed = removed, sorted = s, reversed = r, ordered = big[1] <= big[2] and big[1999] <= big[2000],
        concat = table.concat({1, 2, "x"}, "-"), part = table.concat({"a", "b", "c", "d"}, "", 2, 3),
        unpacked = { table.unpack({1, 2, 3}) }, some = { table.unpack({1, 2, 3}, 2) },
        moved = table.move({1, 2, 3}, 1, 3, 2), into = table.move({1, 2}, 1, 2, 1, {9, 9, 9}),
      }
    """))
    assert outcome.result == {
        "t": ["b", "c"], "removed": ["a", "d"], "sorted": [1, 2, 3, 4, 5], "reversed": ["c", "b", "a"],
        "ordered": True, "concat": "1-2-x", "part": "bc", "unpacked": [1, 2, 3], "some": [2, 3],
        "moved": [1, 1, 2, 3], "into": [1, 2, 9],
    }, outcome.error


def test_table_functions_keep_metamethods_and_errors(run_code):
    """A proxy table sees insert/remove/sort through its metamethods, as with C's versions."""
    outcome = run_code(body("""
      local store, writes = {10, 20, 30}, 0
      local proxy = setmetatable({}, {
        __len = function() return #store end, __index = function(_, k) return store[k] end,
        __newindex = function(_, k, v) writes = writes + 1 store[k] = v end,
      })
      table.insert(proxy, 2, 15) table.remove(proxy, 1) table.sort(proxy, function(a, b) return a > b end)
      local errors = {}
      for _, f in ipairs({
        function() table.insert({}, 5, "x") end, function() table.insert({}, 1, 2, 3) end,
        function() table.remove({1}, 5) end, function() table.sort({3, 1}, 42) end, function() table.insert(nil, 1) end,
      }) do local ok, e = pcall(f) errors[#errors + 1] = e end
      return { store = store, writes = writes > 0, concat = table.concat(proxy, ","), errors = errors }
    """))
    result = outcome.result
    assert result["store"] == [30, 20, 15] and result["writes"] is True and result["concat"] == "30,20,15", outcome.error
    assert [("position out of bounds" in e) for e in result["errors"][:1]] == [True]
    assert "wrong number of arguments to 'insert'" in result["errors"][1]
    assert "position out of bounds" in result["errors"][2]
    assert "function expected" in result["errors"][3]
    assert "table expected" in result["errors"][4]


def test_collectgarbage_collect_is_priced_by_the_heap(run_code):
    outcome = run_code(
        body("local keep = {} for i = 1, 20000 do keep[i] = {i} end for i = 1, 1000 do collectgarbage('collect') end"),
        limits=small_limits(instructions=5_000_000, memory_mb=64),
    )
    assert outcome.error.code == "instruction_limit"
    ordinary = run_code(body('collectgarbage("collect") collectgarbage("step") return collectgarbage("count") > 0'))
    assert ordinary.result is True, ordinary.error


# --- load and require --------------------------------------------------------------------

def test_load_refuses_sources_the_parser_would_take_too_long_on(run_code):
    """Under the byte cap, but with more and/or/elseif than the parser handles quickly."""
    outcome = run_code(body('load("return a" .. string.rep(" or a", 40000))'), limits=REPRO)
    assert outcome.error.code == "source_too_large"
    assert "and/or/elseif" in outcome.error.message
    elseifs = run_code(body('load("if a then" .. string.rep(" elseif a then", 9000) .. " end")'), limits=REPRO)
    assert elseifs.error.code == "source_too_large"


def test_load_prices_parsing(run_code):
    outcome = run_code(
        body('local src = "return 1 --" .. string.rep("x", 200000) for i = 1, 100 do load(src) end'),
        limits=small_limits(instructions=5_000_000),
    )
    assert outcome.error.code == "instruction_limit"


def test_load_of_ordinary_code_still_works(run_code):
    outcome = run_code(body("""
      local f = load("local a, b = ... if a and b or not a then return a + b elseif b then return 0 end")
      local g = load("return " .. string.rep("1 + ", 2000) .. "1")
      return { f(2, 3), g() }
    """))
    assert outcome.result == [5, 2001], outcome.error


def test_bundle_files_are_held_to_the_same_caps(run_code):
    big = "return {}\n--" + "x" * SOURCE_MAX_BYTES
    slow = "return a" + " or a" * 20000
    outcome = run_code(body('return require("big")'), files={"big.lua": big})
    assert outcome.error.code == "source_too_large"
    slowly = run_code(body('return require("slow")'), files={"slow.lua": slow})
    assert slowly.error.code == "source_too_large"
    handler = run_code("function h() return 1 end --" + " and" * 20000)
    assert handler.error.code == "source_too_large"
    fine = run_code(body('return require("lib").n'), files={"lib.lua": "return { n = 7 }\n" + "-- filler\n" * 5000})
    assert fine.result == 7, fine.error


# --- issue 9, section 1: the pattern guard ------------------------------------------------

@pytest.mark.parametrize(
    "call",
    [
        # issue 9: short subjects were never priced; a greedy item before $ was taken as linear
        'string.find(("a"):rep(63) .. "b", (".-"):rep(20) .. "c")',
        'string.find(("a"):rep(1e5) .. "b", "a*$")',
        # the same shapes, lazy or anchored with two items, or ? chains on a tiny subject
        'string.find(("a"):rep(1e5) .. "b", "a-$")',
        'string.match(("a"):rep(2e4) .. "b", "^a*a*$")',
        'string.find(("a"):rep(25), ("a?"):rep(25) .. ("a"):rep(25))',
        # gmatch reads ^ as a plain character: the search is never anchored
        'for m in string.gmatch(("a"):rep(5000), "^.-.-b") do end',
        # balanced matches and back-references before $ rescan from every start
        'string.find(("("):rep(2e4), "%b()$")',
        'string.find(("a"):rep(3e4), "(a-)%1$")',
        # every item of a wide set walks the set
        'string.find(("a"):rep(2000) .. "!", "[" .. ("b"):rep(5000) .. "a]*$")',
        # the trim idiom is quadratic at worst ("x" .. spaces .. "x")
        'string.match("x" .. (" "):rep(1e5) .. "x", "^%s*(.-)%s*$")',
    ],
)
def test_pathological_patterns_are_refused_at_any_size(run_code, call):
    outcome = run_code(body(call), limits=REPRO)
    assert outcome.error.code == "pattern_too_complex", outcome.error


def test_patterns_that_fit_the_cap_but_not_the_time_left_stop_the_run(run_code):
    """Each call is allowed on its own; together they would run far past the deadline
    between two hook checks, so each is weighed against the time left."""
    outcome = run_code(
        body('local s = ("a"):rep(3000) .. "b" while true do s:find("a*$") end'),
        limits=small_limits(timeout_ms=500, instructions=10**9),
    )
    assert outcome.error.code == "timeout"
    assert "could not have finished in time" in outcome.error.message  # stopped before the call, not after


def test_gsub_with_a_function_is_counted_per_call(run_code):
    outcome = run_code(
        body('string.gsub(("a"):rep(1e6), ".", function(c) return c end)'),
        limits=small_limits(instructions=1_000_000, memory_mb=64),
    )
    assert outcome.error.code == "instruction_limit"


def test_ordinary_patterns_still_work_at_size(run_code):
    outcome = run_code(body(r"""
      local csv = ("field,"):rep(20000)
      local n = 0 for f in csv:gmatch("[^,]+") do n = n + 1 end
      local digits = ("x"):rep(10000) .. "12-34"
      local a, b = digits:match("(%d+)-(%d+)")
      local anchored = (("a"):rep(1e5)):match("^a*$") ~= nil
      local spaced = select(2, ((" x "):rep(30000)):gsub("%s+", " "))
      local short = ("key = value"):match("^(%w+)%s*=%s*(%w+)$")
      local tail = ("line\n"):rep(3):match("([^\n]*)\n$")
      return { n, a, b, anchored, spaced, short, tail, ("%b()"):len(), ("f(a(b)c)"):match("%b()") }
    """))
    assert outcome.result == [20000, "12", "34", True, 30001, "key", "line", 4, "(a(b)c)"], outcome.error


# --- issue 9, section 1: the deadline after the handler returns ----------------------------

def test_an_overrun_the_hook_never_saw_is_a_timeout(run_code):
    """Linear C calls on a large input run few instructions: the hook never fires; the
    check after the handler returns records the overrun."""
    outcome = run_code(
        body("local s = input.s for i = 1, 40 do s = s:upper():lower() end return #s"),
        input={"s": "a" * 20_000_000},
        limits=small_limits(timeout_ms=100, memory_mb=128),
    )
    assert outcome.status == "failed"
    assert outcome.error.code == "timeout"
    assert outcome.result is None


def test_a_ctx_call_that_returns_after_the_deadline_is_a_timeout():
    import time

    class Slow:
        config, instance_info, logs = {}, {}, []

        def call(self, name, args, deadline):
            time.sleep(0.3)
            return None

    outcome = run_lua(
        source={"main.lua": body('ctx.log.info("x") return 1')}, file="main.lua", function="h", input={},
        host=Slow(), limits=small_limits(timeout_ms=100),
    )
    assert outcome.error.code == "timeout"


# --- issue 9, section 4: 1 and "1" -------------------------------------------------------

def test_a_result_with_both_1_and_string_1_is_refused(run_code):
    outcome = run_code(body('return { [1] = "one", ["1"] = "uno" }'))
    assert outcome.error.code == "invalid_value"
    assert 'both the key 1 and the key "1"' in outcome.error.message
    nested = run_code(body('return { list = { "a", "b", ["2"] = "c" } }'))
    assert nested.error.code == "invalid_value"
    assert '"2"' in nested.error.message


def test_a_ctx_argument_with_both_1_and_string_1_is_refused(run_code):
    store = MemoryStore()
    outcome = run_code(
        body('ctx.integration.containersSet("orders", "k", { id = 1, [-1] = "x", ["-1"] = "y" })'), store=store
    )
    assert outcome.error.code == "invalid_value"
    assert store.container_get("orders", "k") is None


def test_mixed_keys_without_a_clash_still_pass(run_code):
    outcome = run_code(body('return { "a", "b", x = 1, ["10"] = 2, [-3] = 4 }'))
    assert outcome.result == {"1": "a", "2": "b", "x": 1, "10": 2, "-3": 4}, outcome.error


# --- the same reproductions through manage.py run_handler ---------------------------------

REPRO_HANDLERS = {
    "rep": 'return string.rep("", 8e9)',
    "repmax": 'return string.rep("", math.maxinteger)',
    "insert": 'table.insert(setmetatable({}, {__len = function() return 2e9 end}), 1, "x")',
    "remove": 'table.remove(setmetatable({}, {__len = function() return 2e9 end}), 1)',
    # validation refuses the word load in a bundle; the sandbox still has it
    "parse": '_G["lo" .. "ad"]("return a" .. string.rep(" and a", 80000))',
    "short": 'return string.find(("a"):rep(63) .. "b", (".-"):rep(20) .. "c")',
    "dollar": 'return string.find(("a"):rep(1e5) .. "b", "a*$")',
    "keys": 'return { [1] = 1, ["1"] = 2 }',
}


def test_the_reproductions_through_run_handler(tmp_path):
    import json

    from .test_run_handler_cli import run

    manifest = {
        "name": "limits-test",
        "permissions": ["log"],
        "handlers": {
            name: {"type": "rpc", "file": "main.lua", "function": name, "limits": {"timeoutMs": 1000}}
            for name in REPRO_HANDLERS
        },
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "main.lua").write_text(
        "\n".join(f"function {name}(ctx, input)\n  {code}\nend" for name, code in REPRO_HANDLERS.items())
    )
    code, lines, stderr = run(tmp_path, ",".join(REPRO_HANDLERS), "--json")
    assert code == 1, stderr
    assert [line["error"]["code"] for line in lines] == [
        "call_too_costly", "call_too_costly", "instruction_limit", "instruction_limit", "source_too_large",
        "pattern_too_complex", "pattern_too_complex", "invalid_value",
    ]
