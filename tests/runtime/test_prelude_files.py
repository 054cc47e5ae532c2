"""The sandbox's prelude lives in real Lua files next to runtime/sandbox.py, read and compiled
once per process."""
from __future__ import annotations

import subprocess

import lupa.lua54 as lupa
import pytest

from runtime import sandbox


@pytest.mark.parametrize("path", [sandbox.PRELUDE_PATH, sandbox.LAZY_PRELUDE_PATH], ids=lambda p: p.name)
def test_each_prelude_file_is_lua_that_compiles_on_its_own(path):
    lua = lupa.LuaRuntime(register_eval=False, unpack_returned_tuples=True)
    compiled = lua.execute("local src, name = ...; return load(src, name, 't')", path.read_text(), "=" + path.name)
    assert not isinstance(compiled, tuple), compiled


@pytest.mark.parametrize("path", [sandbox.PRELUDE_PATH, sandbox.LAZY_PRELUDE_PATH], ids=lambda p: p.name)
def test_each_prelude_file_is_tracked_by_git(path):
    # Shipped with the code: nothing (.gitignore, an export rule) leaves *.lua out.
    listed = subprocess.run(["git", "ls-files", "--error-unmatch", path.name], cwd=path.parent,
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr


def test_the_prelude_is_read_once_per_process(run_code, monkeypatch, tmp_path):
    assert run_code("function h(ctx, input) return table.concat({'a', 'b'}) end").result == "ab"
    monkeypatch.setattr(sandbox, "PRELUDE_PATH", tmp_path / "missing.lua")
    monkeypatch.setattr(sandbox, "LAZY_PRELUDE_PATH", tmp_path / "missing_lazy.lua")
    outcome = run_code("function h(ctx, input) return table.concat({'c', 'd'}) end")
    assert outcome.ok and outcome.result == "cd"
