"""The ctx API as a package sees it: every function, the permission it needs and how many
arguments it takes, declared once.

Three readers build their tables from ``FUNCTIONS``: the runtime's ``Ctx.call`` (which
function answers, which permission it checks), the sandbox's Lua prelude (the ``ctx`` table
handed to handlers, with each function's argument cap) and the static checker
(``packaging.lua.CTX_API``, the permission a ``ctx.*`` path needs). The manifest schema's
``permissions`` enum lists the same ``PERMISSIONS`` (a test holds them together).

Plain data, no Django: the packaging side and the runtime both import it, and it imports
neither.
"""
from __future__ import annotations

from dataclasses import dataclass

SQL_WRITE = "device.sql.write"

PERMISSIONS = (
    "device.http",
    "device.sql.read",
    SQL_WRITE,  # granted on top of device.sql.read: ctx.device.sql may then write
    "integration.cache",
    "integration.containers",
    "tenant.cache",
    "tenant.sql",
    "log",
    "callback",  # ctx.callback.url: one-time URLs that post an event to the instance
)

LOG_LEVELS = ("debug", "info", "warn", "error")

# ctx fields that are plain values (no permission, any field below them is readable).
DATA_FIELDS = ("config", "instance")


@dataclass(frozen=True)
class CtxFunction:
    """``ctx.<name>(...)``: refused without ``permission``; more than ``max_args`` arguments
    is an ``invalid_argument`` error before anything crosses to the host."""

    name: str
    permission: str
    max_args: int

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split("."))


FUNCTIONS = (
    CtxFunction("device.http", "device.http", 2),
    CtxFunction("device.sql", "device.sql.read", 3),
    CtxFunction("integration.cacheGet", "integration.cache", 1),
    CtxFunction("integration.cacheSet", "integration.cache", 1),
    CtxFunction("integration.containersGet", "integration.containers", 2),
    CtxFunction("integration.containersSet", "integration.containers", 3),
    CtxFunction("integration.containersList", "integration.containers", 1),
    CtxFunction("integration.containersDelete", "integration.containers", 2),
    *(CtxFunction(f"log.{level}", "log", 2) for level in LOG_LEVELS),
    # print(...) and ctx.print(...) join their arguments in Lua and hand over one string.
    CtxFunction("print", "log", 1),
    CtxFunction("cache.get", "tenant.cache", 1),
    CtxFunction("cache.set", "tenant.cache", 3),
    CtxFunction("cache.delete", "tenant.cache", 1),
    CtxFunction("sql", "tenant.sql", 2),
    # ctx.callback.url(event, {ttl = seconds}) → a URL that posts ``event`` once (runtime.callbacks).
    CtxFunction("callback.url", "callback", 2),
)

BY_NAME = {function.name: function for function in FUNCTIONS}

CONTAINER_FUNCTIONS = frozenset(
    function.path[-1] for function in FUNCTIONS if function.permission == "integration.containers"
)


# The globals of a handler's environment (runtime/prelude.lua builds it; a runtime test
# compares the two). load, collectgarbage and require are the sandbox's restricted, priced
# versions (docs/sandbox.md): source text only; count/collect/step; bundle files only.
SANDBOX_GLOBALS = frozenset({
    "assert", "error", "ipairs", "next", "pairs", "rawequal", "rawget", "rawlen", "rawset", "select",
    "tonumber", "tostring", "type", "getmetatable", "_VERSION", "_G",
    "pcall", "xpcall", "setmetatable", "collectgarbage", "print", "load", "require",
    "string", "table", "math", "utf8", "os", "coroutine", "ctx",
})

# Names of standard Lua (5.1 to 5.4) that the sandbox does not offer: code using them fails
# at run time, so the static checker refuses it before (lua_forbidden). Dotted names are
# library members the sandbox removes.
FORBIDDEN_GLOBALS = frozenset({
    "io", "loadstring", "dofile", "loadfile", "debug", "package", "module", "setfenv", "getfenv", "newproxy",
    "os.execute", "os.exit", "os.remove", "os.rename", "os.tmpname", "os.getenv", "os.setlocale",
    "string.dump",
})
