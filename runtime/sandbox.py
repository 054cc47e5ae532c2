"""Run one Lua handler in a fresh, locked-down Lua 5.4 state (lupa).

The Lua side (environment, ctx table, hook, guards) is ``prelude.lua`` and, loaded on a run's
first need, ``prelude_lazy.lua`` next to this module: both compiled once per process.

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

The outcome (``RunResult``), its error codes and the errors host callbacks raise are
``runtime.outcomes``.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lupa.lua54 as lupa

from marketplace.packaging import contract

from .limits import Limits
from .outcomes import Host, HostError, RunResult, RunStopped, SandboxError, parse_error

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
# The prelude (run at the start of every run) and the lazy library it loads on a run's first
# need: trusted Lua next to this module, compiled once per process.
PRELUDE_PATH = Path(__file__).with_name("prelude.lua")
LAZY_PRELUDE_PATH = Path(__file__).with_name("prelude_lazy.lua")

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
    """prelude.lua with the contract's ctx functions written in at the marker."""
    prelude = PRELUDE_PATH.read_text(encoding="utf-8")
    if prelude.count(_CTX_MARKER) != 1:  # pragma: no cover - an edit of the prelude lost it
        raise RuntimeError(f"{PRELUDE_PATH.name} has no ctx functions marker")
    return prelude.replace(_CTX_MARKER, _ctx_fields())


def _prelude_loader(lua):
    """The prelude, loaded as bytecode; the lazy library's bytecode (prelude_lazy.lua) rides
    along. Both are read and compiled on the process's first run only."""
    global _prelude_bytecode, _lazy_bytecode
    if _prelude_bytecode is None:
        _lazy_bytecode = _compile(LAZY_PRELUDE_PATH.read_text(encoding="utf-8"))
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
        error = parse_error(value if isinstance(value, str) else str(value))
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
