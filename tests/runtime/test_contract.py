"""The sandbox's ctx table and the host's permission checks are built from the package
contract: each function is there, refuses one argument too many and checks its permission."""
from __future__ import annotations

import pytest

from marketplace.packaging import contract

# print is wrapped in Lua (its arguments are joined into one string): it takes any number.
CALLED_DIRECTLY = [function for function in contract.FUNCTIONS if function.name != "print"]


def _args(n: int) -> str:
    return ", ".join(["nil"] * n)


@pytest.mark.parametrize("function", CALLED_DIRECTLY, ids=lambda f: f.name)
def test_one_argument_too_many_is_refused_before_the_host(run_code, function):
    outcome = run_code(f"function h(ctx, input)\n  ctx.{function.name}({_args(function.max_args + 1)})\nend",
                       permissions=[])
    assert outcome.error.code == "invalid_argument"
    assert outcome.error.message == f"ctx.{function.name} takes at most {function.max_args} arguments"


@pytest.mark.parametrize("function", contract.FUNCTIONS, ids=lambda f: f.name)
def test_each_function_checks_the_contract_permission(run_code, function):
    others = [p for p in contract.PERMISSIONS if p != function.permission]
    outcome = run_code(f"function h(ctx, input)\n  ctx.{function.name}({_args(function.max_args)})\nend",
                       permissions=others)
    assert outcome.error.code == "permission_denied"
    assert f"'{function.permission}'" in outcome.error.message


def test_the_ctx_table_holds_the_contract_functions_and_nothing_else(run_code):
    outcome = run_code("""
function h(ctx, input)
  local names = {}
  local function walk(t, prefix)
    for k, v in pairs(t) do
      if type(v) == "function" then names[#names + 1] = prefix .. k
      elseif type(v) == "table" and k ~= "config" and k ~= "instance" then walk(v, prefix .. k .. ".") end
    end
  end
  walk(ctx, "")
  return names
end""")
    assert sorted(outcome.result) == sorted(contract.BY_NAME)


def test_the_handler_environment_holds_exactly_the_contract_globals(run_code):
    outcome = run_code("function h(ctx, input)\n  local names = {}\n  for k in pairs(_G) do names[#names + 1] = k end\n"
                       "  return names\nend")
    assert set(outcome.result) - {"h"} == contract.SANDBOX_GLOBALS


@pytest.mark.parametrize("name", sorted(contract.FORBIDDEN_GLOBALS))
def test_what_the_checker_forbids_the_sandbox_does_not_offer(run_code, name):
    outcome = run_code(f"function h(ctx, input)\n  return {name} == nil\nend")
    assert outcome.result is True


def test_what_the_checker_allows_the_sandbox_runs(run_code):
    outcome = run_code('local util = require("lib.util")\nfunction h(ctx, input)\n  collectgarbage("collect")\n'
                       '  return { util.name, load("return 1 + 1")(), collectgarbage("count") > 0 }\nend',
                       files={"lib/util.lua": "return { name = 'util' }"})
    assert outcome.result == ["util", 2, True]
