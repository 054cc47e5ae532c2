"""JSON Schema (Draft 2020-12) validation whose regular expressions cannot hold the process.

Schemas come from publishers (``configSchema``, ``dataContainerSchemas``, RPC
``inputSchema``/``outputSchema``) and the values checked against them from anyone, so a
``pattern`` such as ``^(a+)+$`` against ``"a" * 29 + "!"`` would backtrack for seconds
(exponentially longer with each ``a``) in Python's ``re``, which jsonschema uses. Every
validation in Junction goes through this module instead:

- ``pattern``, ``patternProperties`` and ``additionalProperties`` (which reads
  ``patternProperties``) search with the ``regex`` engine under a timeout: at most
  ``JUNCTION_SCHEMA_REGEX_TIMEOUT_MS`` per search and ``JUNCTION_SCHEMA_REGEX_BUDGET_MS`` for
  all the searches of one validation (``errors``/``first_error``). A search that runs out
  fails validation with a message saying so; nothing is ever accepted unchecked.
- ``unevaluatedProperties`` is refused in a schema that has ``patternProperties``
  (``check_schema``): jsonschema evaluates those regexes in its own helper, beyond reach.
- ``format: regex`` only compiles the pattern (never matches), which is bounded by its size.
"""
from __future__ import annotations

import contextvars
import time
from functools import lru_cache
from typing import Any, Iterator

import regex
from django.conf import settings
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError

__all__ = ["SchemaError", "Validator", "check_schema", "errors", "first_error", "validator"]

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("schema_regex_deadline", default=None)
_TIMED_OUT = object()


def _ms(name: str, default: int) -> float:
    return getattr(settings, name, default) / 1000.0


@lru_cache(maxsize=512)
def _compiled(pattern: str):
    return regex.compile(pattern)


def _search(pattern: str, text: str):
    """True/False for a match, ``_TIMED_OUT`` when the search ran out of time, and False for a
    pattern the engine cannot compile (``check_schema`` reports those)."""
    try:
        compiled = _compiled(pattern)
    except (regex.error, TypeError, ValueError, RecursionError):
        return False
    timeout = _ms("JUNCTION_SCHEMA_REGEX_TIMEOUT_MS", 100)
    deadline = _deadline.get()
    if deadline is not None:
        timeout = min(timeout, deadline - time.monotonic())
        if timeout <= 0:
            return _TIMED_OUT
    try:
        return compiled.search(text, timeout=timeout) is not None
    except TimeoutError:
        return _TIMED_OUT


def _too_slow(pattern: str, what: str) -> ValidationError:
    return ValidationError(f"{what} could not be checked against the pattern {pattern!r} in time (the pattern is too slow)")


def _pattern(validator, pattern, instance, schema):
    if not validator.is_type(instance, "string"):
        return
    found = _search(pattern, instance)
    if found is _TIMED_OUT:
        yield _too_slow(pattern, f"{instance[:40]!r}")
    elif not found:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator, pattern_properties, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        for key, value in instance.items():
            found = _search(pattern, key)
            if found is _TIMED_OUT:
                yield _too_slow(pattern, f"the property name {key[:40]!r}")
            elif found:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator, additional, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = []
    for key in instance:
        if key in properties:
            continue
        matched = False
        for pattern in patterns:
            found = _search(pattern, key)
            if found is _TIMED_OUT:
                yield _too_slow(pattern, f"the property name {key[:40]!r}")
                return
            if found:
                matched = True
                break
        if not matched:
            extras.append(key)
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
    elif not additional and extras:
        names = ", ".join(repr(key) for key in sorted(extras))
        if patterns:
            yield ValidationError(f"{names} {'does' if len(extras) == 1 else 'do'} not match any of the regexes: "
                                  + ", ".join(repr(p) for p in sorted(patterns)))
        else:
            yield ValidationError(f"Additional properties are not allowed ({names} {'was' if len(extras) == 1 else 'were'} unexpected)")


Validator = validators.extend(
    Draft202012Validator,
    {"pattern": _pattern, "patternProperties": _pattern_properties, "additionalProperties": _additional_properties},
)


def _keywords(schema: Any, depth: int = 0) -> set[str]:
    if depth > 200:
        return set()
    found: set[str] = set()
    if isinstance(schema, dict):
        found.update(key for key in schema if key in ("patternProperties", "unevaluatedProperties"))
        for value in schema.values():
            found |= _keywords(value, depth + 1)
    elif isinstance(schema, list):
        for value in schema:
            found |= _keywords(value, depth + 1)
    return found


def check_schema(schema: Any) -> None:
    """Raise ``SchemaError`` unless ``schema`` is valid Draft 2020-12 that this module can
    validate with bounded regexes (see the module docstring)."""
    Validator.check_schema(schema)
    if {"patternProperties", "unevaluatedProperties"} <= _keywords(schema):
        raise SchemaError(
            "unevaluatedProperties cannot be combined with patternProperties "
            "(their regexes could not be checked in bounded time)"
        )


def validator(schema: Any, *, format_checker: bool = False) -> Validator:
    """A validator for a schema already checked with ``check_schema``; ``format_checker``
    turns on Draft 2020-12's format assertions."""
    return Validator(schema, format_checker=Validator.FORMAT_CHECKER if format_checker else None)


def errors(validator: Validator, instance: Any, schema: Any = None) -> list[ValidationError]:
    """Every violation of ``instance`` (against ``schema``, a subschema of the validator's, when
    given), with all regex searches sharing ``JUNCTION_SCHEMA_REGEX_BUDGET_MS``."""
    token = _deadline.set(time.monotonic() + _ms("JUNCTION_SCHEMA_REGEX_BUDGET_MS", 1000))
    try:
        found: Iterator[ValidationError] = (
            validator.iter_errors(instance) if schema is None else validator.descend(instance, schema)
        )
        return list(found)
    finally:
        _deadline.reset(token)


def first_error(validator: Validator, instance: Any) -> ValidationError | None:
    """The first violation of ``instance`` or None, under the same regex budget."""
    token = _deadline.set(time.monotonic() + _ms("JUNCTION_SCHEMA_REGEX_BUDGET_MS", 1000))
    try:
        return next(iter(validator.iter_errors(instance)), None)
    finally:
        _deadline.reset(token)
