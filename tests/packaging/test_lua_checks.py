"""Static checks of Lua code: what the parser sees, scoping, and graceful fallback."""
from __future__ import annotations

import pytest

from marketplace.packaging import lua
from marketplace.packaging.validation import validate_content

from .helpers import MINI_MANIFEST


def check(source: str, **manifest):
    return validate_content({**MINI_MANIFEST, **manifest}, {"main.lua": source})


def issues(report):
    return [(i.code, i.line) for i in report.errors + report.warnings]


def test_compile_errors_carry_luas_own_message_and_line():
    assert lua.compile_error("x = 1\ny = = 2\n", "lib/a.lua") == (2, "unexpected symbol near '='")
    assert lua.compile_error("return 1", "a.lua") is None


def test_compiling_never_runs_the_code():
    # A top-level error() would fire if the chunk were executed.
    assert lua.compile_error('error("ran")\nwhile true do end', "a.lua") is None


def test_binary_chunks_are_refused():
    failure = lua.compile_error("\x1bLua", "a.lua")
    assert failure is not None and "binary" in failure[1]


def test_locals_shadow_forbidden_globals():
    report = check('local io = { write = print }\nfunction sync(ctx, input)\n  ctx.log.info("x")\n  io.write("fine")\nend\n')
    assert issues(report) == []


def test_forbidden_globals_inside_nested_functions_are_found():
    source = 'function sync(ctx, input)\n  ctx.log.info("x")\n  local f = function()\n    return debug.traceback()\n  end\nend\n'
    assert issues(check(source)) == [("lua_forbidden", 4)]


def test_a_computed_alias_is_a_warning_not_an_error():
    source = 'function sync(ctx, input)\n  ctx.log.info("x")\n  return ctx.device.http(input.alias, { path = "/" })\nend\n'
    report = check(source, permissions=["log", "device.http"], resources={"a": {"kind": "http"}})
    assert report.valid
    # The alias is unknown, so the resource is not reported as unused.
    assert issues(report) == [("resource_alias_dynamic", 3)]


def test_a_stored_ctx_function_is_a_dynamic_use():
    source = 'local log = ctx.log\nfunction sync(ctx, input)\n  local http = ctx.device.http\n  log.info(http("a"))\nend\n'
    report = check(source, permissions=["log", "device.http"], resources={"a": {"kind": "http"}})
    assert issues(report) == [("resource_alias_dynamic", 3)]


@pytest.mark.parametrize("permissions, query, expected", [
    (["log", "device.sql.read"], '"SELECT 1"', []),
    (["log", "device.sql.write"], '"SELECT 1"', [("permission_missing", 3), ("permission_unused", None)]),
    (["log", "device.sql.read"], '"UPDATE t SET a = 1"', [("permission_missing", 3)]),
    (["log", "device.sql.read", "device.sql.write"], '"  insert into t values (1)"', []),
    (["log", "device.sql.read", "device.sql.write"], '"SELECT 1"', [("permission_unused", None)]),
    (["log", "device.sql.read", "device.sql.write"], "input.query", []),  # a computed query may write
])
def test_sql_needs_read_and_writing_statements_need_write_too(permissions, query, expected):
    source = f'function sync(ctx, input)\n  ctx.log.info("x")\n  return ctx.device.sql("erp", {query}, {{}})\nend\n'
    report = check(source, permissions=permissions, resources={"erp": {"kind": "sql"}})
    assert issues(report) == expected


def test_ctx_print_logs():
    report = check('function sync(ctx, input)\n  ctx.print("a", 1)\nend\n')
    assert issues(report) == []


def test_tenant_functions_need_tenant_permissions():
    source = 'function sync(ctx, input)\n  ctx.log.info("x")\n  ctx.cache.set("k", 1)\n  return ctx.sql("SELECT 1")\nend\n'
    report = check(source)
    assert [(i.code, i.line, i.message) for i in report.errors] == [
        ("permission_missing", 3, "ctx.cache.set needs the permission 'tenant.cache'; add it to permissions"),
        ("permission_missing", 4, "ctx.sql needs the permission 'tenant.sql'; add it to permissions"),
    ]


def test_unused_declarations_are_warnings():
    manifest = {
        "permissions": ["log", "integration.containers"],
        "resources": {"printer": {"kind": "http"}},
        "dataContainerSchemas": {"orders": {"type": "object"}},
    }
    report = check('function sync(ctx, input)\n  ctx.log.info("x")\nend\n', **manifest)
    assert report.valid
    assert [(w.code, w.path) for w in report.warnings] == [
        ("permission_unused", "permissions.1"),
        ("resource_unused", "resources.printer"),
        ("container_unused", "dataContainerSchemas.orders"),
    ]


def test_undeclared_containers_are_warnings():
    source = 'function sync(ctx, input)\n  ctx.integration.containersSet("ordres", "k", {})\nend\n'
    report = check(source, permissions=["integration.containers"], dataContainerSchemas={"orders": {"type": "object"}})
    assert [(w.code, w.line) for w in report.warnings] == [("container_undeclared", 2), ("container_unused", None)]


def test_syntax_the_parser_does_not_know_falls_back_to_a_warning():
    # Lua 5.4 accepts hexadecimal floats; luaparser 4.2 does not.
    source = 'function sync(ctx, input)\n  ctx.log.info("x")\n  return 0x1.8p3\nend\n'
    report = check(source)
    assert report.valid
    assert [(w.code, w.file) for w in report.warnings] == [("lua_parser_fallback", "main.lua")]


def test_fallback_still_finds_missing_functions_as_warnings():
    source = 'function other(ctx, input)\n  return 0x1.8p3\nend\n'
    report = check(source)
    assert report.valid
    assert [w.code for w in report.warnings] == ["lua_parser_fallback", "handler_function_unchecked"]


def test_deep_nesting_falls_back_instead_of_crashing():
    source = "function sync(ctx, input)\n  return " + "(" * 150 + "1" + ")" * 150 + "\nend\n"
    report = check(source, permissions=[])
    assert report.valid
    assert [w.code for w in report.warnings] == ["lua_parser_fallback"]


@pytest.mark.parametrize("path, known, permissions", [
    (["device", "http"], True, ("device.http",)),
    (["log"], True, ("log",)),
    (["integration"], True, ("integration.cache", "integration.containers")),
    (["config", "anything", "deep"], True, ()),
    (["log", "trace"], False, ()),
    (["sql", "query"], False, ()),
])
def test_the_ctx_api_resolves_paths(path, known, permissions):
    assert lua.resolve_ctx(path) == (known, permissions)


def test_static_checks_stop_at_their_byte_budget(settings):
    settings.JUNCTION_LUA_STATIC_MAX_BYTES = 100
    files = {"main.lua": 'function sync(ctx, input)\n  ctx.log.info("x")\nend\n',
             "z.lua": "-- " + "x" * 100 + "\nos.execute('ls')\n"}
    report = validate_content(MINI_MANIFEST, files)
    # main.lua is checked; z.lua only compiled, and "unused" warnings are not guessed.
    assert report.valid
    assert [(w.code, w.file) for w in report.warnings] == [("lua_parser_fallback", "z.lua")]


def test_absurd_nesting_is_reported_with_luas_message():
    assert lua.compile_error("return " + "(" * 300 + "1" + ")" * 300, "a.lua") == (None, "C stack overflow")


def test_bundle_files_are_lua_whatever_their_names():
    report = validate_content({**MINI_MANIFEST, "handlers": {"sync": {**MINI_MANIFEST["handlers"]["sync"], "file": "main"}}},
                              {"main": "function sync(ctx, input\nend\n"})
    assert [(e.code, e.file, e.line) for e in report.errors] == [("lua_syntax", "main", 2)]


def test_load_collectgarbage_and_require_are_allowed_as_the_sandbox_offers_them():
    files = {
        "main.lua": 'local util = require("lib.util")\nfunction sync(ctx, input)\n  ctx.log.info(util.name)\n'
                    '  collectgarbage("collect")\n  return load("return 1")()\nend\n',
        "lib/util.lua": "return { name = 'util' }\n",
    }
    report = validate_content(MINI_MANIFEST, files)
    assert issues(report) == [("lua_dynamic_code", 5)]
    assert report.valid


def test_load_through_G_is_the_dynamic_code_warning_too():
    assert issues(check('function sync(ctx, input)\n  ctx.log.info("x")\n  return _G.load("return 1")()\nend\n')) == [
        ("lua_dynamic_code", 3)]


def test_require_of_a_module_outside_the_bundle_is_an_error():
    report = check('local socket = require("socket")\nfunction sync(ctx, input)\n  ctx.log.info("x")\nend\n')
    assert issues(report) == [("lua_module_missing", 1)]
    assert "socket.lua" in report.errors[0].message


def test_the_forbidden_list_and_the_sandbox_globals_do_not_overlap():
    from marketplace.packaging import contract

    top_level = {name for name in contract.FORBIDDEN_GLOBALS if "." not in name}
    assert not top_level & contract.SANDBOX_GLOBALS
