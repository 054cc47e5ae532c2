"""What a run comes back as, and how it fails: ``RunResult`` and ``SandboxError`` (the
sandbox's outcome, recorded on the ``HandlerRun``), the errors host callbacks raise
(``HostError``, ``RunStopped``), and the error codes.

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

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

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


_LOCATION = re.compile(r"^(?P<file>[\w./-]+\.lua):(?P<line>\d+): ")
_CODE = re.compile(r"^(?P<code>[a-z_]+): ")


def parse_error(message: str) -> SandboxError:
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
