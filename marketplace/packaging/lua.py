"""Lua: compiling without running, and static checks with a real Lua parser.

``compile_error`` asks Lua 5.4 itself (lupa's ``load`` in text mode) whether a file
compiles, so the message and line are exactly what the runtime would say. ``analyze`` parses
the file with ``luaparser`` and walks the tree with lexical scopes to find what the code uses:
``ctx.*`` paths (with the permission each needs), ``ctx.device.http/sql`` calls and their
literal aliases, container names, forbidden globals, and top-level function definitions.
When luaparser cannot parse something Lua accepts, ``analyze`` raises ``ParserUnavailable`` and
the caller degrades to a warning: the parser must never produce a false error.

Both take an optional deadline (a ``time.monotonic()`` value) and stop there: Lua's parser is
quadratic on long ``and``/``or`` chains (``return a`` and 40,000 `` and a`` take seconds) and
luaparser's prediction is slow on nested parentheses (a few kB/s), so neither may run unbounded
on a package from outside.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import cache

import lupa.lua54 as lua54

from . import contract
from .contract import CONTAINER_FUNCTIONS

# --- Compiling ------------------------------------------------------------------------------

_LUA_MESSAGE = re.compile(r"^(?P<file>.*?):(?P<line>\d+): (?P<message>.*)$", re.DOTALL)
_OUT_OF_TIME = "junction: compile deadline"
# Lua reads the source through this reader, a piece at a time, so the deadline is checked
# between pieces: a piece is small enough that even a hostile one compiles in milliseconds.
_READER = """
local source, name, piece, expired, mark = ...
local at = 1
return load(function()
  if expired() then error(mark, 0) end
  local text = source:sub(at, at + piece - 1)
  at = at + piece
  return text
end, name, "t")
"""
_PIECE = 1024


class OutOfTime(Exception):
    """The deadline passed before the compiler or the static checker finished."""


def compile_error(source: str, filename: str, *, deadline: float | None = None) -> tuple[int | None, str] | None:
    """``None`` when ``source`` compiles as a Lua 5.4 text chunk, else ``(line, message)``
    with Lua's own message. Nothing is executed: ``load`` only compiles. Raises OutOfTime
    when ``deadline`` passes first."""
    runtime = lua54.LuaRuntime(register_eval=False, unpack_returned_tuples=True)
    expired = (lambda: time.monotonic() > deadline) if deadline is not None else (lambda: False)
    try:
        result = runtime.execute(_READER, source, "@" + filename, _PIECE, expired, _OUT_OF_TIME)
    except (lua54.LuaError, MemoryError) as exc:  # e.g. "C stack overflow" on absurd nesting
        result = (None, str(exc))
    if not isinstance(result, tuple):
        return None
    message = str(result[1]).split("\nstack traceback:", 1)[0]
    if message == _OUT_OF_TIME:
        raise OutOfTime(f"Lua did not finish compiling {filename} in time")
    match = _LUA_MESSAGE.match(message)
    if match and match.group("file") == filename:
        return int(match.group("line")), match.group("message")
    return None, message


# --- The ctx API ----------------------------------------------------------------------------

DATA = "data"  # ctx.config / ctx.instance: plain values, no permission, any field below.


def _ctx_api() -> dict:
    """path → permissions of which one is needed (a tuple) / a namespace (a dict) / DATA,
    built from the package contract (``contract.FUNCTIONS``)."""
    api: dict = {name: DATA for name in contract.DATA_FIELDS}
    for function in contract.FUNCTIONS:
        *namespaces, leaf = function.path
        node = api
        for part in namespaces:
            node = node.setdefault(part, {})
        node[leaf] = (function.permission,)
    return api


CTX_API: dict = _ctx_api()

# Globals the sandbox does not offer; using them is an error. Prefix match on dotted paths.
FORBIDDEN = contract.FORBIDDEN_GLOBALS
_ENV_NAMES = {"_G", "_ENV"}
_WRITE_SQL = re.compile(r"^\s*(insert|update|delete|merge|replace|upsert|create|drop|alter|truncate|grant|revoke)\b", re.I)


def _leaf_permissions(node) -> set[str]:
    if node == DATA:
        return set()
    if isinstance(node, tuple):
        return set(node)
    return set().union(*(_leaf_permissions(child) for child in node.values()))


def resolve_ctx(parts: list[str]) -> tuple[bool, tuple[str, ...]]:
    """For ``ctx.<parts>``: (known?, permissions of which one is needed)."""
    node = CTX_API
    for part in parts:
        if node == DATA:
            return True, ()
        if not isinstance(node, dict) or part not in node:
            return False, ()
        node = node[part]
    if isinstance(node, tuple):
        return True, node
    return True, tuple(sorted(_leaf_permissions(node)))


# --- Analysis -------------------------------------------------------------------------------

class ParserUnavailable(Exception):
    """luaparser could not parse a file (that Lua itself may accept)."""


@dataclass
class CtxUse:
    path: str                  # "device.http", "log.info", "config.site"
    line: int | None
    known: bool
    permissions: tuple[str, ...]  # one of these is needed
    called: bool
    writes: bool = False          # a literal SQL statement that writes: device.sql.write too
    may_write: bool = False       # a query that is not a literal (or no call): it might write


@dataclass
class DeviceCall:
    kind: str                  # "http" or "sql"
    line: int | None
    alias: str | None          # None when not a string literal
    method: str | None = None  # literal request method / path of an http call
    path: str | None = None
    writes: bool = False       # a literal SQL statement that writes


@dataclass
class ContainerUse:
    name: str | None
    line: int | None


@dataclass
class LuaAnalysis:
    file: str
    top_level_functions: dict[str, int] = field(default_factory=dict)   # global, defined at top level
    local_functions: dict[str, int] = field(default_factory=dict)       # `local function` at top level
    nested_functions: dict[str, int] = field(default_factory=dict)      # global, defined in a block
    ctx_uses: list[CtxUse] = field(default_factory=list)
    device_calls: list[DeviceCall] = field(default_factory=list)
    containers: list[ContainerUse] = field(default_factory=list)
    forbidden: list[tuple[str, int | None]] = field(default_factory=list)
    loads: list[int | None] = field(default_factory=list)                     # lines calling load()
    requires: list[tuple[str | None, int | None]] = field(default_factory=list)  # require(name): literal or None
    dynamic_device: set[str] = field(default_factory=set)  # kinds referenced without a literal call


def _string(node) -> str | None:
    from luaparser import astnodes

    if isinstance(node, astnodes.String):
        value = node.s
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


def _table_fields(node) -> dict[str, object]:
    from luaparser import astnodes

    out = {}
    if isinstance(node, astnodes.Table):
        for fld in node.fields:
            key = fld.key
            name = key.id if isinstance(key, astnodes.Name) and not fld.between_brackets else _string(key)
            if name is not None:
                out[name] = fld.value
    return out


class _Walker:
    def __init__(self, analysis: LuaAnalysis):
        from luaparser import astnodes

        self.n = astnodes
        self.a = analysis
        self.scopes: list[set[str]] = [set()]
        self.current_line: int | None = None  # the enclosing statement's, for nodes without tokens

    # scopes
    def is_local(self, name: str) -> bool:
        return any(name in scope for scope in self.scopes)

    def declare(self, name: str) -> None:
        self.scopes[-1].add(name)

    def visit_block(self, block, *, top: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.scopes.append(set(extra))
        for statement in block.body:
            self.visit_statement(statement, top=top)
        self.scopes.pop()

    def visit_function(self, args, body, *, implicit_self: bool = False) -> None:
        names = [a.id for a in args if isinstance(a, self.n.Name)]
        if implicit_self:
            names.append("self")
        self.visit_block(body, extra=tuple(names))

    # statements
    def visit_statement(self, node, *, top: bool) -> None:
        n = self.n
        if getattr(node, "line", None):
            self.current_line = node.line
        if isinstance(node, n.LocalFunction):
            name = node.name.id
            self.declare(name)
            if top:
                self.a.local_functions.setdefault(name, node.line)
            self.visit_function(node.args, node.body)
        elif isinstance(node, n.Function):
            if isinstance(node.name, n.Name):
                name = node.name.id
                if not self.is_local(name):
                    target = self.a.top_level_functions if top else self.a.nested_functions
                    target.setdefault(name, node.line)
            else:
                self.visit_expr(node.name)
            self.visit_function(node.args, node.body)
        elif isinstance(node, n.Method):
            self.visit_expr(node.source)
            self.visit_function(node.args, node.body, implicit_self=True)
        elif isinstance(node, n.LocalAssign):
            for value in node.values or []:
                self.visit_expr(value)
            for target, value in zip(node.targets, node.values or []):
                if top and isinstance(target, n.Name) and isinstance(value, n.AnonymousFunction):
                    self.a.local_functions.setdefault(target.id, node.line)
            for target in node.targets:
                if isinstance(target, n.Name):
                    self.declare(target.id)
        elif isinstance(node, n.Assign):
            for value in node.values:
                self.visit_expr(value)
            for target, value in zip(node.targets, node.values):
                if isinstance(target, n.Name) and isinstance(value, n.AnonymousFunction) and not self.is_local(target.id):
                    where = self.a.top_level_functions if top else self.a.nested_functions
                    where.setdefault(target.id, node.line)
            for target in node.targets:
                if isinstance(target, n.Name):
                    self.check_global([target.id], target.line)
                else:
                    self.visit_expr(target)
        elif isinstance(node, (n.While,)):
            self.visit_expr(node.test)
            self.visit_block(node.body)
        elif isinstance(node, n.Repeat):
            self.visit_block(node.body)
            self.visit_expr(node.test)
        elif isinstance(node, n.Do):
            self.visit_block(node.body)
        elif isinstance(node, (n.If, n.ElseIf)):
            self.visit_expr(node.test)
            self.visit_block(node.body)
            if node.orelse is not None:
                if isinstance(node.orelse, n.Block):
                    self.visit_block(node.orelse)
                else:
                    self.visit_statement(node.orelse, top=False)
        elif isinstance(node, n.Fornum):
            for expr in (node.start, node.stop, node.step):
                if isinstance(expr, n.Node):
                    self.visit_expr(expr)
            self.visit_block(node.body, extra=(node.target.id,))
        elif isinstance(node, n.Forin):
            for expr in node.iter:
                self.visit_expr(expr)
            self.visit_block(node.body, extra=tuple(t.id for t in node.targets if isinstance(t, n.Name)))
        elif isinstance(node, n.Return):
            values = node.values if isinstance(node.values, list) else [node.values] if node.values else []
            for value in values:
                self.visit_expr(value)
        elif isinstance(node, n.Block):
            self.visit_block(node)
        elif isinstance(node, (n.Label, n.Goto, n.SemiColon, n.Break)):
            return
        else:
            self.visit_expr(node)

    # expressions
    def chain(self, node) -> tuple[list[str], int | None] | None:
        """``a.b["c"].d`` → (["a", "b", "c", "d"], line) when the base is a global name and
        every key is a name or a string literal."""
        n = self.n
        parts: list[str] = []
        line = getattr(node, "line", None)
        while isinstance(node, n.Index):
            if node.notation == n.IndexNotation.DOT and isinstance(node.idx, n.Name):
                parts.append(node.idx.id)
            elif _string(node.idx) is not None:
                parts.append(_string(node.idx))
            else:
                return None
            node = node.value
        if isinstance(node, n.Name) and (node.id == "ctx" or not self.is_local(node.id)):
            parts.append(node.id)
            return list(reversed(parts)), node.line or line or self.current_line
        return None

    def visit_index(self, node) -> None:
        """Visit the non-literal parts of an index chain (bracket keys, a non-name base)."""
        n = self.n
        while isinstance(node, n.Index):
            if not (node.notation == n.IndexNotation.DOT and isinstance(node.idx, n.Name)):
                self.visit_expr(node.idx)
            node = node.value
        self.visit_expr(node)

    def check_global(self, parts: list[str], line: int | None) -> None:
        while parts and parts[0] in _ENV_NAMES and len(parts) > 1:
            parts = parts[1:]
        for size in range(1, len(parts) + 1):
            dotted = ".".join(parts[:size])
            if dotted in FORBIDDEN:
                self.a.forbidden.append((dotted, line))
                return

    def record_ctx(self, parts: list[str], line: int | None, call=None) -> None:
        rest = parts[1:]
        if not rest:
            return
        known, permissions = resolve_ctx(rest)
        path = ".".join(rest)
        writes = may_write = False
        if rest[:2] == ["device", "sql"] or rest == ["device"]:
            query = _string(call.args[1]) if call is not None and len(call.args) > 1 and len(rest) == 2 else None
            writes = bool(query and _WRITE_SQL.match(query))
            may_write = query is None
        self.a.ctx_uses.append(CtxUse(path=path, line=line, known=known, permissions=permissions, called=call is not None,
                                      writes=writes, may_write=may_write))
        if not known:
            return
        if rest[:1] == ["device"]:
            kinds = [rest[1]] if len(rest) > 1 else ["http", "sql"]
            if call is None or len(rest) != 2:
                self.a.dynamic_device.update(kinds)
                return
            alias = _string(call.args[0]) if call.args else None
            device = DeviceCall(kind=rest[1], line=line, alias=alias, writes=writes)
            if rest[1] == "http" and len(call.args) > 1:
                request = _table_fields(call.args[1])
                # No method: the runtime sends GET. A computed one: any method may match.
                device.method = _string(request.get("method")) if "method" in request else "GET"
                device.path = _string(request.get("path")) if "path" in request else None
            self.a.device_calls.append(device)
            if alias is None:
                self.a.dynamic_device.add(rest[1])
        elif rest[:1] == ["integration"] and len(rest) == 2 and rest[1] in CONTAINER_FUNCTIONS:
            name = _string(call.args[0]) if call is not None and call.args else None
            self.a.containers.append(ContainerUse(name=name, line=line))
        elif rest == ["integration"]:
            self.a.containers.append(ContainerUse(name=None, line=line))

    def visit_reference(self, node, call=None) -> None:
        found = self.chain(node)
        if found is None:
            if isinstance(node, self.n.Index):
                self.visit_index(node)
            elif node is not None and not isinstance(node, self.n.Name):  # a local name: nothing to check
                self.visit_expr(node)
            return
        parts, line = found
        if call is not None and call.line is not None:
            line = call.line
        line = line or self.current_line
        if parts[0] == "ctx":
            self.record_ctx(parts, line, call)
        else:
            self.check_global(parts, line)
            while parts[0] in _ENV_NAMES and len(parts) > 1:
                parts = parts[1:]
            if parts == ["load"]:
                self.a.loads.append(line)
            elif parts == ["require"] and call is not None:
                self.a.requires.append((_string(call.args[0]) if call.args else None, line))
        if isinstance(node, self.n.Index):
            self.visit_index_keys(node)

    def visit_index_keys(self, node) -> None:
        n = self.n
        while isinstance(node, n.Index):
            if not (node.notation == n.IndexNotation.DOT and isinstance(node.idx, n.Name)) and _string(node.idx) is None:
                self.visit_expr(node.idx)
            node = node.value

    def visit_expr(self, node) -> None:
        n = self.n
        if node is None or not isinstance(node, n.Node):
            return
        if isinstance(node, n.Call):
            self.visit_reference(node.func, call=node)
            for arg in node.args:
                self.visit_expr(arg)
        elif isinstance(node, n.Invoke):
            self.visit_expr(node.source)
            for arg in node.args:
                self.visit_expr(arg)
        elif isinstance(node, (n.Name, n.Index)):
            self.visit_reference(node)
        elif isinstance(node, n.AnonymousFunction):
            self.visit_function(node.args, node.body)
        elif isinstance(node, n.Table):
            for fld in node.fields:
                if fld.between_brackets:
                    self.visit_expr(fld.key)
                self.visit_expr(fld.value)
        elif isinstance(node, n.Field):
            self.visit_expr(node.value)
        elif isinstance(node, (n.Function, n.LocalFunction, n.Method, n.Assign, n.Block, n.Return)):
            self.visit_statement(node, top=False)
        else:
            for key, value in vars(node).items():
                if key.startswith("_") or key == "comments":
                    continue
                if isinstance(value, n.Node):
                    self.visit_expr(value)
                elif isinstance(value, list):
                    for item in value:
                        if isinstance(item, n.Node):
                            self.visit_expr(item)


@cache
def load_parser():
    """luaparser's pieces, with a token stream that keeps time. Imported on first use: the
    ANTLR parser takes half a second to import, and most processes never validate."""
    from antlr4 import CommonTokenStream, InputStream
    from antlr4.error.ErrorListener import ErrorListener
    from antlr4.error.Errors import ParseCancellationException
    from antlr4.error.ErrorStrategy import BailErrorStrategy
    from luaparser.builder import BuilderVisitor
    from luaparser.parser.LuaLexer import LuaLexer
    from luaparser.parser.LuaParser import LuaParser

    class Refuse(ErrorListener):
        """Stop at the first syntax error instead of printing it and recovering."""

        def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):
            raise ParserUnavailable(f"syntax errors: line {line}:{column}: {msg}")

    class DeadlineStream(CommonTokenStream):
        """ANTLR's prediction asks the stream for lookahead all through its work, which is
        where the time goes: checking the clock here (every 512 looks) bounds the parse."""

        def __init__(self, lexer, deadline: float | None):
            super().__init__(lexer)
            self.deadline, self.looks = deadline, 0

        def LT(self, k):
            self.looks += 1
            if self.deadline is not None and not self.looks % 512 and time.monotonic() > self.deadline:
                raise OutOfTime("the static checker ran out of time")
            return super().LT(k)

    def parse(source: str, deadline: float | None):
        lexer = LuaLexer(InputStream(source))
        lexer.removeErrorListeners()
        lexer.addErrorListener(Refuse())
        stream = DeadlineStream(lexer, deadline)
        parser = LuaParser(stream)
        parser.removeErrorListeners()
        parser.addErrorListener(Refuse())
        parser._errHandler = BailErrorStrategy()
        try:
            tree = parser.start_()
        except ParseCancellationException as exc:  # the bail strategy's own way of stopping
            raise ParserUnavailable(f"syntax errors: {exc}") from None
        return BuilderVisitor(stream).visit(tree)

    return parse


def analyze(source: str, filename: str, *, deadline: float | None = None) -> LuaAnalysis:
    """Static facts about one Lua file. Raises ParserUnavailable when luaparser fails, and
    OutOfTime when ``deadline`` passes first."""
    try:
        tree = load_parser()(source, deadline)
    except (OutOfTime, ParserUnavailable):
        raise
    except RecursionError:
        raise ParserUnavailable("the file nests too deeply for the static checker") from None
    except Exception as exc:  # luaparser raises assorted errors on syntax it does not know
        raise ParserUnavailable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    analysis = LuaAnalysis(file=filename)
    walker = _Walker(analysis)
    try:
        walker.visit_block(tree.body, top=True)
    except RecursionError:
        raise ParserUnavailable("the file nests too deeply for the static checker") from None
    return analysis


_TOP_FUNCTION = r"^\s*(?:function\s+{name}\s*\(|{name}\s*=\s*function\s*\()"


def defines_function_roughly(source: str, name: str) -> bool:
    """Fallback without a parser: a line that starts defining global ``name``."""
    return re.search(_TOP_FUNCTION.format(name=re.escape(name)), source, re.MULTILINE) is not None
