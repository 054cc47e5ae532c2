"""Per-handler limits: what the manifest asks for, capped by the platform's maxima.

A handler's manifest entry may carry ``limits`` with ``timeoutMs``, ``memoryMb`` and
``instructions``. Each is clamped to ``[1, JUNCTION_RUNTIME_MAX_*]``; a missing or invalid
value falls back to ``JUNCTION_RUNTIME_DEFAULT_*``. The other caps (logs, result size, HTTP
response size, SQL rows, pattern cost) are platform-wide and not negotiable by a manifest.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings

# The settings a Limits is built from; their values are declared once, in marketplace/settings.py.
_SETTINGS = (
    "JUNCTION_RUNTIME_DEFAULT_TIMEOUT_MS",
    "JUNCTION_RUNTIME_MAX_TIMEOUT_MS",
    "JUNCTION_RUNTIME_DEFAULT_MEMORY_MB",
    "JUNCTION_RUNTIME_MAX_MEMORY_MB",
    "JUNCTION_RUNTIME_DEFAULT_INSTRUCTIONS",
    "JUNCTION_RUNTIME_MAX_INSTRUCTIONS",
    "JUNCTION_RUNTIME_LOG_MAX_LINES",
    "JUNCTION_RUN_LOG_MAX_BYTES",
    "JUNCTION_RUNTIME_RESULT_MAX_BYTES",
    "JUNCTION_RUNTIME_VALUE_MAX_BYTES",
    "JUNCTION_RUNTIME_HTTP_MAX_RESPONSE_BYTES",
    "JUNCTION_RUNTIME_SQL_MAX_ROWS",
    "JUNCTION_RUNTIME_PATTERN_MAX_COST",
)


_cache: tuple[object, dict] | None = None


def setting(name: str) -> Any:
    """A runtime setting, read once per settings object (``override_settings`` swaps it)."""
    global _cache
    wrapped = settings._wrapped
    if _cache is None or _cache[0] is not wrapped:
        _cache = (wrapped, {key: getattr(settings, key) for key in _SETTINGS})
    return _cache[1][name]


@dataclass(frozen=True)
class Limits:
    """Everything that bounds one run. ``timeout_ms`` is wall-clock and includes time spent
    inside ctx calls (HTTP, SQL, storage); ``memory_mb`` is the Lua heap on top of the
    sandbox's own baseline; ``instructions`` counts Lua VM instructions (approximately, in
    steps of the count hook)."""

    timeout_ms: int
    memory_mb: int
    instructions: int
    log_lines: int
    log_bytes: int
    result_bytes: int
    value_bytes: int
    http_response_bytes: int
    sql_max_rows: int
    pattern_cost: float

    def with_(self, **changes) -> Limits:
        return replace(self, **changes)


def _clamp(value: Any, default: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return min(default, maximum)
    return max(1, min(int(value), maximum))


def platform_limits() -> Limits:
    """The defaults, for a handler without ``limits``."""
    return limits_for(None)


# Limits per (settings, requested values): every run asks, and a Limits is immutable.
_by_request: dict = {}


def limits_for(handler: dict | None) -> Limits:
    """Limits for one manifest handler entry (or None): requested values capped by the maxima."""
    requested = (handler or {}).get("limits") if isinstance(handler, dict) else None
    requested = requested if isinstance(requested, dict) else {}
    t, m, i = requested.get("timeoutMs"), requested.get("memoryMb"), requested.get("instructions")
    # Types are part of the key: True == 1 == 1.0, yet only 1 is a valid request.
    key = (settings._wrapped, type(t), t, type(m), m, type(i), i)
    try:
        return _by_request[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable value (a list...): not cached
        return _limits(requested)
    if len(_by_request) >= 256:
        _by_request.clear()
    limits = _by_request[key] = _limits(requested)
    return limits


def _limits(requested: dict) -> Limits:
    return Limits(
        timeout_ms=_clamp(
            requested.get("timeoutMs"),
            setting("JUNCTION_RUNTIME_DEFAULT_TIMEOUT_MS"),
            setting("JUNCTION_RUNTIME_MAX_TIMEOUT_MS"),
        ),
        memory_mb=_clamp(
            requested.get("memoryMb"),
            setting("JUNCTION_RUNTIME_DEFAULT_MEMORY_MB"),
            setting("JUNCTION_RUNTIME_MAX_MEMORY_MB"),
        ),
        instructions=_clamp(
            requested.get("instructions"),
            setting("JUNCTION_RUNTIME_DEFAULT_INSTRUCTIONS"),
            setting("JUNCTION_RUNTIME_MAX_INSTRUCTIONS"),
        ),
        log_lines=setting("JUNCTION_RUNTIME_LOG_MAX_LINES"),
        log_bytes=setting("JUNCTION_RUN_LOG_MAX_BYTES"),
        result_bytes=setting("JUNCTION_RUNTIME_RESULT_MAX_BYTES"),
        value_bytes=setting("JUNCTION_RUNTIME_VALUE_MAX_BYTES"),
        http_response_bytes=setting("JUNCTION_RUNTIME_HTTP_MAX_RESPONSE_BYTES"),
        sql_max_rows=setting("JUNCTION_RUNTIME_SQL_MAX_ROWS"),
        pattern_cost=float(setting("JUNCTION_RUNTIME_PATTERN_MAX_COST")),
    )
